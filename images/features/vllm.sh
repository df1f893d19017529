#!/usr/bin/env bash
# @phoenix summary: a pinned vLLM in its own virtualenv, installed as vLLM documents it (uv, --torch-backend=auto), under a lock
# @phoenix requires: gpu
# @phoenix requires-feature: nvidia
#
# Context: PHX_VLLM_VERSION (pinned), PHX_VLLM_LOCK (the lock of its transitive dependencies, delivered with this
#          script from images/locks/), PHX_GPUS, PHX_VLLM_TORCH_VARIANT (optional: cu126, cu128, cu129, ...; default
#          auto, PyTorch's build for the CUDA the driver supports, as uv detects it).
# vLLM goes into /opt/vllm (a virtualenv of the distro's python3) with vLLM's documented command,
# `uv pip install vllm==X --torch-backend=auto`, with a pinned uv, constrained by the lock: a rebake months later
# installs the same versions. The lock (python -m phoenix.tools.lock_vllm) is resolved against PyPI for Python 3.12 on
# glibc 2.39, with hashes. PyTorch's CUDA build is chosen here on the guest, its version comes from the lock: torch,
# torchvision, torchaudio, triton and xformers are pinned by version only (that build's wheels are not PyPI's files),
# the CUDA libraries (nvidia-*-cuNN) are left to the torch wheel of that build, which pins them exactly; every other
# package is pinned by version and sha256. No hand-kept table of wheel names and CUDA builds.
# Before the layer counts as baked: the guest's python3 is the lock's Python, the installed vLLM is the pinned version,
# every installed package the lock pins has the locked version, and PyTorch in the virtualenv sees CUDA and exactly
# the assigned number of GPUs (torch.cuda.is_available(), torch.cuda.device_count()).
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"

VLLM_VENV="${VLLM_VENV:-/opt/vllm}"
VLLM_MARKER="$VLLM_VENV/.phoenix-vllm"
VLLM_UV_VERSION="${VLLM_UV_VERSION:-0.9.5}"

# vllm_torch_backend VARIANT: the --torch-backend value: auto, or a PyTorch CUDA build (cu126 ...).
vllm_torch_backend() {
    local v="${1:-auto}"
    [[ "$v" == auto || "$v" =~ ^cu[0-9]{3}$ || "$v" == cpu ]] ||
        phx_die "invalid vllm torch variant '$v' (auto, cpu or cuNNN such as cu128)"
    printf '%s\n' "$v"
}

# vllm_install_args VERSION BACKEND PYTHON CONSTRAINTS: the arguments of `uv`, one a line (vLLM's documented install,
# constrained by the lock).
vllm_install_args() {
    printf '%s\n' pip install --python "$3" "vllm==$1" "--torch-backend=$2" --constraints "$4"
}

# vllm_constraints LOCK: the lock as uv constraints: every pin with its hashes, except those that follow the CUDA
# build chosen here (version only) and the CUDA libraries (left out: the torch wheel of that build pins them).
vllm_constraints() {
    awk '
        /^[A-Za-z0-9]/ {
            split($1, pin, "=="); name = tolower(pin[1]); gsub(/[-_.]+/, "-", name)
            mode = "keep"
            if (name ~ /^nvidia-[a-z0-9-]+-cu[0-9]+$/) mode = "drop"
            else if (name ~ /^(torch|torchvision|torchaudio|triton|xformers)$/) { mode = "version"; print $1 }
            if (mode == "keep") print
            next
        }
        /^ +--hash=/ { if (mode == "keep") print }
    ' "$1"
}

# vllm_lock_python LOCK: the Python a lock was resolved for (vllm-0.10.1.1-py312.txt: 3.12).
vllm_lock_python() {
    local name="${1##*/}"
    [[ "$name" =~ -py([0-9])([0-9]+)\.txt$ ]] || phx_die "cannot tell the Python of the lock $1 (want NAME-pyXY.txt)"
    printf '%s.%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
}

# vllm_check_python LOCK PYTHON: PYTHON is the Python the lock was resolved for.
vllm_check_python() {
    local want have
    want="$(vllm_lock_python "$1")"
    have="$("$2" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [[ "$have" == "$want" ]] ||
        phx_die "the lock ${1##*/} is for Python $want, this guest's $2 is Python $have (an OS template with Python $want, such as Ubuntu 24.04, or a lock for $have)"
}

# vllm_lock_pins LOCK VERSION: the lock pins exactly vllm==VERSION.
vllm_lock_pins() {
    local found
    found="$(awk '/^vllm==/ { sub(/^vllm==/, "", $1); print $1 }' "$1")"
    [[ "$found" == "$2" ]] || phx_die "the lock $1 pins vllm '${found:-nothing}', not $2 (python -m phoenix.tools.lock_vllm $2)"
}

# vllm_check_pins CONSTRAINTS: every installed package the constraints pin has the pinned version (+local ignored).
vllm_check_pins() {
    local out
    out="$("$VLLM_VENV/bin/python" - "$1" <<'EOF'
import importlib.metadata as m
import re
import sys

bad = []
for line in open(sys.argv[1], encoding="utf-8"):
    pin = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
    if not pin:
        continue
    try:
        found = m.version(pin.group(1))
    except m.PackageNotFoundError:
        continue
    if found.split("+")[0] != pin.group(2):
        bad.append(f"{pin.group(1)} {found} (locked: {pin.group(2)})")
print("\n".join(bad))
EOF
)" || phx_die "cannot read the installed packages of $VLLM_VENV"
    [[ -z "$out" ]] || { printf '%s\n' "$out" >&2; phx_die "installed packages differ from the lock (above)"; }
    phx_log "installed packages match the lock"
}

# vllm_version_matches INSTALLED WANTED: 0.10.1.1+cu126 matches 0.10.1.1.
vllm_version_matches() { [[ -n "$1" && "${1%%+*}" == "$2" ]]; }

vllm_installed_version() {
    [[ -x "$VLLM_VENV/bin/python" ]] || return 0
    "$VLLM_VENV/bin/python" - <<'EOF' 2>/dev/null || true
import importlib.metadata as m
try:
    print(m.version("vllm"))
except m.PackageNotFoundError:
    pass
EOF
}

# vllm_check_torch GPUS: PyTorch in the virtualenv sees CUDA and the assigned number of GPUs.
vllm_check_torch() {
    local gpus="${1//[[:space:]]/}" want out
    local -a list=()
    [[ -z "$gpus" ]] || IFS=, read -r -a list <<<"$gpus"
    want=${#list[@]}
    out="$("$VLLM_VENV/bin/python" -c 'import torch; print(torch.cuda.is_available(), torch.cuda.device_count(), torch.version.cuda)' 2>&1)" ||
        { printf '%s\n' "$out" >&2; phx_die "PyTorch does not import in $VLLM_VENV"; }
    out="${out##*$'\n'}"     # the last line: what the script printed, after any warnings
    case "$out" in
        "True $want "*) phx_log "PyTorch sees CUDA ${out##* } and $want GPU(s)" ;;
        True\ *) phx_die "PyTorch sees $(cut -d' ' -f2 <<<"$out") GPU(s), expected $want" ;;
        *) phx_die "PyTorch does not see CUDA (torch.cuda.is_available() is False: driver too old for this build, or the nvidia feature's device nodes missing)" ;;
    esac
}

main() {
    phx_load_context
    local version installed backend gpus lock tmp
    version="$(phx_ctx vllm_version)"
    lock="$(phx_ctx vllm_lock)"
    gpus="$(phx_ctx gpus)"
    [[ -n "$version" ]] || phx_die "no vllm.version in the context"
    [[ -n "$lock" && -f "$lock" ]] ||
        phx_die "the lock of vLLM $version (${lock:-no vllm.lock in the context}) is not in the guest: it comes with this script from images/locks/ (python -m phoenix.tools.lock_vllm $version)"
    vllm_lock_pins "$lock" "$version"
    phx_tmpdir tmp
    vllm_constraints "$lock" >"$tmp/constraints.txt"
    backend="$(vllm_torch_backend "$(phx_ctx vllm_torch_variant auto)")"
    installed="$(vllm_installed_version)"
    if vllm_version_matches "$installed" "$version"; then
        phx_log "vLLM $installed already in $VLLM_VENV"
    else
        phx_apt_install python3 python3-venv python3-dev gcc libc6-dev ca-certificates
        vllm_check_python "$lock" python3
        if [[ -n "$installed" ]]; then
            phx_log "replacing vLLM $installed"
            rm -rf "$VLLM_VENV"
        fi
        if [[ ! -x "$VLLM_VENV/bin/python" ]]; then
            python3 -m venv "$VLLM_VENV"
            phx_changed "created virtualenv $VLLM_VENV"
        fi
        "$VLLM_VENV/bin/pip" install --quiet "uv==$VLLM_UV_VERSION"
        local -a args
        mapfile -t args < <(vllm_install_args "$version" "$backend" "$VLLM_VENV/bin/python" "$tmp/constraints.txt")
        phx_log "uv ${args[*]}"
        "$VLLM_VENV/bin/uv" "${args[@]}"
        installed="$(vllm_installed_version)"
        vllm_version_matches "$installed" "$version" || phx_die "uv installed vLLM '${installed:-nothing}', not $version"
        printf 'version=%s\ntorch_backend=%s\nuv=%s\nlock=%s\n' "$version" "$backend" "$VLLM_UV_VERSION" "${lock##*/}" |
            phx_write_file "$VLLM_MARKER" 0644
        phx_changed "installed vLLM $installed in $VLLM_VENV"
    fi
    vllm_check_pins "$tmp/constraints.txt"
    vllm_check_torch "$gpus"
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
