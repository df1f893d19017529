#!/usr/bin/env bash
# Phoenix set-up on a fresh machine (Debian 12, Python 3.11). Two entry points:
#   bash bootstrap.sh sim    install, then build the example estate on the embedded simulated host (doit)
#   bash bootstrap.sh test   install the test dependencies (apt + pip + npm), then run the whole test suite
# Idempotent: a second run reuses .venv and installs nothing new.
set -euo pipefail
cd "$(dirname "$0")"

mode="${1:-}"
case "$mode" in sim|test) ;; *) echo "usage: bash bootstrap.sh sim|test" >&2; exit 2 ;; esac

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "bootstrap: apt-get install ${missing[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

python=python3
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "bootstrap: Phoenix needs Python 3.11 or newer" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; "$python" -m venv .venv; }
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null

if [ "$mode" = sim ]; then
    .venv/bin/python -m pip install -q -e '.[sim]'
    exec .venv/bin/doit "${@:2}"
fi

# test: system packages the tests need (shellcheck, OpenSSH server, a Debian root file system builder, ...)
mapfile -t packages < <(cat .ci/apt-*.txt 2>/dev/null | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
[ "${#packages[@]}" -eq 0 ] || apt_install "${packages[@]}"
# Mermaid's own parser, which the graph tests check `phoenix graph` with (.ci/mermaid; its lock pins every package)
command -v npm >/dev/null || apt_install nodejs npm
if ! cmp -s .ci/mermaid/package-lock.json .ci/mermaid/node_modules/.phoenix-lock; then
    npm ci --prefix .ci/mermaid --no-audit --no-fund --silent
    cp .ci/mermaid/package-lock.json .ci/mermaid/node_modules/.phoenix-lock
fi
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/ruff check .
.venv/bin/mypy
set +e
# pytest-xdist: one worker more than the cores, since some tests wait on real services and slowed tasks (on 2 cores,
# 3 workers took 324 s where 2 took 377 s and 4 took 334 s); chroots of one suite share their apt cache by links,
# never a directory (tests/features/conftest.py)
.venv/bin/python -m pytest -n "${PHOENIX_TEST_WORKERS:-$(( $(nproc) + 1 ))}" "${@:2}"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "bootstrap: pytest collected no tests: that is a failure, not a pass" >&2
    exit 1
fi
exit "$rc"
