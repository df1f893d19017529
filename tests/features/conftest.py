"""Fixtures for the feature script library (images/): run shell functions, and real Debian 12 chroots."""

from __future__ import annotations

import copy
import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phoenix.context import to_env, to_json
from phoenix.transport.base import CONTEXT_ENV, CONTEXT_JSON, LIB_PATH, RUN_DIR, SCRIPT_ENV, SECRETS_DIR

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
LIB = IMAGES / "lib" / "phoenix-common.sh"
CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
# under the project's .cache/, which CI caches: a clean clone with CI's cache restored builds no root file system
CACHE = Path(os.environ.get("PHOENIX_TEST_CACHE") or REPO / ".cache" / "tests")
MIRROR = os.environ.get("PHOENIX_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
ROOTFS_VERSION = "v2"     # bump to rebuild cached root file systems
# systemd is installed (as in Proxmox's Debian template) but not running: scripts enable services only.
INCLUDE = ("systemd", "systemd-sysv")
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def all_scripts() -> list[Path]:
    return sorted(p for p in IMAGES.rglob("*.sh") if p.is_file())


def need_tool(name: str) -> str:
    """The path of a tool the tests need: a failure in CI (the set-up must provide it), a skip elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not found (apt-get install {name}; see .ci/apt-features.txt)"
    if CI:
        pytest.fail(message)
    pytest.skip(message)


# ---------------------------------------------------------------------------------------------
# Context: shaped like phoenix.context.build_context output (test_feat_context checks the shape).

BASE_CONTEXT: dict[str, Any] = {
    "ctid": 902,
    "name": "BaseTemplateDocker",
    "os": {"id": "debian", "version": "12"},
    "features": ["base_setup", "docker"],
    "timezone": "Etc/UTC",
    "locale": "en_US.UTF-8",
    "extra_packages": [],
    "unattended_upgrades": False,
    "user": None,
    "network": {"ip": "10.0.0.202/24", "gateway": "10.0.0.1"},
    "gpus": [],
    "gpu_count": 0,
    "nvidia": {"driver_version": "570.133.07", "installer_sha256": None},
    "docker": {"user": None, "nvidia_toolkit": False, "source": "distro", "login_user": None},
    "portainer": {"role": "none", "port": 9443, "version": "2.33.5", "data_dir": "/var/lib/portainer"},
    "vllm": {
        "version": "0.10.1.1",
        "lock": "/opt/phoenix/files/vllm-0.10.1.1-py312.txt",
        "model": None,
        "served_model_name": None,
        "port": 8000,
        "max_model_len": None,
        "gpu_memory_utilization": 0.9,
        "dtype": "auto",
        "tensor_parallel_size": 1,
        "args": [],
        "model_cache": "/var/lib/vllm/models",
    },
    "mount_points": [],
    "secrets": [],
}


def _merge(into: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
    return into


def make_context(**over: Any) -> dict[str, Any]:
    """BASE_CONTEXT with nested overrides: make_context(vllm={"model": "x"}, gpus=[0, 1])."""
    ctx = _merge(copy.deepcopy(BASE_CONTEXT), over)
    if "gpus" in over:
        ctx["gpu_count"] = len(ctx["gpus"])
        ctx["docker"]["nvidia_toolkit"] = bool(ctx["gpus"])
        ctx["vllm"].setdefault("tensor_parallel_size", max(1, len(ctx["gpus"])))
    return ctx


# ---------------------------------------------------------------------------------------------
# Running shell functions of a script on this machine


class Shell:
    """Source a script (its main does not run) and run bash code that calls its functions."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.secrets = tmp / "secrets"
        self.secrets.mkdir(mode=0o700, exist_ok=True)

    def write_context(self, context: dict[str, Any]) -> dict[str, str]:
        (self.tmp / "context.env").write_text(to_env(context))
        (self.tmp / "context.json").write_text(to_json(context))
        return {"PHOENIX_ENV": str(self.tmp / "context.env"), "PHOENIX_CONTEXT": str(self.tmp / "context.json")}

    def secret(self, name: str, value: str) -> Path:
        path = self.secrets / name
        path.write_text(value + "\n")
        path.chmod(0o600)
        return path

    def run(self, script: str | Path, code: str, context: dict[str, Any] | None = None,
            env: dict[str, str] | None = None, check: bool = True, stdin: str | None = None,
            ) -> subprocess.CompletedProcess[str]:
        script = Path(script)
        if not script.is_absolute():
            script = IMAGES / script
        full_env = {
            "PATH": os.environ.get("PATH", GUEST_PATH),
            "HOME": str(self.tmp),
            "LC_ALL": "C.UTF-8",
            "PHOENIX_LIB": str(LIB),
            "PHOENIX_SECRETS": str(self.secrets),
            "PHOENIX_ENV": str(self.tmp / "missing-context.env"),
            "PHOENIX_CONTEXT": str(self.tmp / "missing-context.json"),
        }
        if context is not None:
            full_env.update(self.write_context(context))
        full_env.update(env or {})
        prog = f'source "$1"\nshift\n{"phx_load_context" if context is not None else ":"}\n{code}\n'
        result = subprocess.run(["bash", "-c", prog, "bash", str(script)], env=full_env, text=True,
                                capture_output=True, input=stdin, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
        return result


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    return Shell(tmp_path)


@pytest.fixture(scope="session")
def shellcheck() -> str:
    return need_tool("shellcheck")


# ---------------------------------------------------------------------------------------------
# Debian 12 root file systems (slow tests)


def build_rootfs(target: Path, suite: str = "bookworm") -> None:
    """A Debian minbase tarball with systemd (not running); services never start in it (policy-rc.d), as in any chroot build."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part.tar.gz")
    suites = [f"deb {MIRROR} {suite} main", f"deb {MIRROR} {suite}-updates main",
              f"deb {MIRROR.replace('/debian', '/debian-security')} {suite}-security main"]
    hook = ('printf "#!/bin/sh\\nexit 101\\n" > "$1/usr/sbin/policy-rc.d"; chmod 755 "$1/usr/sbin/policy-rc.d"')
    if shutil.which("mmdebstrap"):
        cmd = ["mmdebstrap", "--mode=root", "--variant=minbase", f"--include={','.join(INCLUDE)}",
               f"--customize-hook={hook}", suite, str(tmp), *suites]
        subprocess.run(cmd, check=True, capture_output=True, timeout=900)
    else:
        need_tool("debootstrap")
        work = target.with_name(target.name + ".dir")
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", suite, str(work), MIRROR],
                       check=True, capture_output=True, timeout=900)
        (work / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
        (work / "usr/sbin/policy-rc.d").chmod(0o755)
        (work / "etc/apt/sources.list").write_text("\n".join(suites) + "\n")
        subprocess.run(["tar", "-C", str(work), "--numeric-owner", "-czf", str(tmp), "."], check=True)
        shutil.rmtree(work)
    tmp.rename(target)


def cached_rootfs(name: str, suite: str) -> Path:
    if os.geteuid() != 0:
        if CI:
            pytest.fail("the chroot tests need root")
        pytest.skip("the chroot tests need root")
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / f"{name}-minbase-{ROOTFS_VERSION}.tar.gz"
    with open(CACHE / f"rootfs-{name}.lock", "w") as lock:   # one lock a root file system: two build at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            build_rootfs(target, suite)
    return target


@pytest.fixture(scope="session")
def debian12_tarball() -> Path:
    return cached_rootfs("debian12", "bookworm")


@pytest.fixture(scope="session")
def debian13_tarball() -> Path:
    """Debian 13 (trixie): its Docker, runc and Python are closer to Ubuntu 24.04's than Debian 12's."""
    return cached_rootfs("debian13", "trixie")


class AptArchives:
    """The .deb files a suite's chroots downloaded, kept between test runs (CACHE/apt-archives-<suite>).

    apt holds its archive directory's lock for a whole install, so chroots that share one directory fail when they
    install at once (pytest-xdist runs tests in parallel). Each guest gets a directory of its own, filled with hard
    links to the shared files, and links what it downloaded back when it leaves."""

    def __init__(self, suite: str, guest: Path):
        self.shared = CACHE / f"apt-archives-{suite}"
        self.own = guest.parent / "apt-archives"

    def _link(self, src: Path, dst: Path) -> None:
        (dst / "partial").mkdir(parents=True, exist_ok=True)
        with open(CACHE / f"{self.shared.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for deb in src.glob("*.deb"):
                target = dst / deb.name
                if not target.exists():
                    try:
                        os.link(deb, target)
                    except OSError:   # another file system: a copy
                        shutil.copy2(deb, target)

    def take(self) -> Path:
        self._link(self.shared, self.own)
        return self.own

    def give_back(self) -> None:
        if self.own.is_dir():
            self._link(self.own, self.shared)


class Guest:
    """An unpacked root file system entered with chroot, laid out as Phoenix lays out a container."""

    def __init__(self, root: Path, context: dict[str, Any], secrets: dict[str, str], archives: AptArchives):
        self.root = root
        self.archives = archives
        self.context = context
        self.secrets = secrets
        self.mounts: list[Path] = []
        self.done: set[str] = set()

    def path(self, guest_path: str) -> Path:
        return self.root / guest_path.lstrip("/")

    def _mount(self, args: list[str], where: str) -> None:
        target = self.path(where)
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(target)], check=True)
        self.mounts.append(target)

    def enter(self) -> None:
        self._mount(["-t", "proc", "proc"], "/proc")
        self._mount(["--bind", "/dev"], "/dev")
        self._mount(["--bind", "/dev/pts"], "/dev/pts")
        self._mount(["--bind", str(self.archives.take())], "/var/cache/apt/archives")
        shutil.copyfile("/etc/resolv.conf", self.path("/etc/resolv.conf"))
        self.lay_out()

    def lay_out(self) -> None:
        self.path(CONTEXT_JSON).parent.mkdir(parents=True, exist_ok=True)
        self.path(CONTEXT_JSON).write_text(to_json(self.context))
        self.path(CONTEXT_ENV).write_text(to_env(self.context))
        secrets = self.path(SECRETS_DIR)
        secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, value in self.secrets.items():
            (secrets / name).write_text(value + "\n")
            (secrets / name).chmod(0o600)
        self.path(LIB_PATH).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(LIB, self.path(LIB_PATH))

    def leave(self) -> None:
        for target in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(target)], check=False)
        self.mounts.clear()
        self.archives.give_back()

    def mounted(self) -> bool:
        prefix = str(self.root.resolve())
        with open("/proc/mounts") as f:
            return any(line.split()[1].startswith(prefix) for line in f)

    def sh(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["chroot", str(self.root), "/usr/bin/env", "-i", f"PATH={GUEST_PATH}", "HOME=/root",
                               "/bin/bash", "-c", command], text=True, capture_output=True, check=check, timeout=600)

    def run_script(self, script: Path, name: str | None = None) -> subprocess.CompletedProcess[str]:
        """Deliver and run a script the way the transport does: /bin/bash /opt/phoenix/run/<name>."""
        name = name or script.stem
        guest = f"{RUN_DIR}/{name}"
        self.path(guest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(script, self.path(guest))
        env = [f"{k}={v}" for k, v in SCRIPT_ENV.items()]
        result = subprocess.run(["chroot", str(self.root), "/usr/bin/env", "-i", f"PATH={GUEST_PATH}", "HOME=/root",
                                 *env, "/bin/bash", guest], text=True, capture_output=True, timeout=900)
        print(f"--- {name} (exit {result.returncode})\n{result.stdout}\n{result.stderr}")
        if result.returncode != 0:
            raise AssertionError(f"{name} failed ({result.returncode})\n{result.stdout}\n{result.stderr}")
        return result

    def fingerprint(self, *trees: str) -> dict[str, str]:
        """Content hash, mode and owner of every file and link under the trees (a real "nothing changed" check)."""
        out: dict[str, str] = {}
        for tree in trees:
            base = self.path(tree)
            paths = [base] if base.is_file() else sorted(base.rglob("*"))
            for p in paths:
                st = p.lstat()
                rel = "/" + str(p.relative_to(self.root))
                if p.is_symlink():
                    out[rel] = f"link {os.readlink(p)}"
                elif p.is_file():
                    out[rel] = f"{st.st_mode:o} {st.st_uid}:{st.st_gid} {hashlib.sha256(p.read_bytes()).hexdigest()}"
                elif p.is_dir():
                    out[rel] = f"dir {st.st_mode:o} {st.st_uid}:{st.st_gid}"
        return out


@pytest.fixture(scope="module")
def guest_factory(debian12_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """guest_factory(context, secrets) -> a fresh Guest, unpacked from the cached tarball; torn down after the module."""
    yield from _guests(debian12_tarball, tmp_path_factory, "bookworm")


@pytest.fixture(scope="module")
def trixie_guest_factory(debian13_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """guest_factory on Debian 13."""
    yield from _guests(debian13_tarball, tmp_path_factory, "trixie")


def _guests(tarball: Path, tmp_path_factory: pytest.TempPathFactory, suite: str) -> Iterator[Any]:
    guests: list[Guest] = []

    def make(context: dict[str, Any], secrets: dict[str, str] | None = None) -> Guest:
        root = tmp_path_factory.mktemp("guest") / "root"
        root.mkdir()
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xzpf", str(tarball)], check=True)
        g = Guest(root, context, secrets or {}, AptArchives(suite, root))
        guests.append(g)
        g.enter()
        return g

    yield make
    for g in guests:
        g.leave()
        if g.mounted():     # never delete through a mount of the host's /dev
            raise RuntimeError(f"{g.root} still has mounts; not removed")
        shutil.rmtree(g.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Recording stand-ins for docker, systemctl, curl and journalctl (app scripts, without daemons)

FAKE_DOCKER = r"""#!/bin/bash
printf 'docker %s\n' "$*" >> "$FAKE_LOG"
if [ ! -t 0 ]; then cat >> "$FAKE_STDIN"; fi
case "$1" in
    info|pull|start|login) exit 0 ;;
    inspect) [ -f "$FAKE_STATE" ] && cat "$FAKE_STATE" && exit 0; exit 1 ;;
    rm) rm -f "$FAKE_STATE" ;;
    run)
        image="" hash=""
        prev=""
        for a in "$@"; do
            case "$a" in portainer/*) [ -z "$image" ] && image="$a" ;; esac
            [ "$prev" = --label ] && hash="${a#phoenix.spec=}"
            prev="$a"
        done
        echo "$image $hash true" > "$FAKE_STATE"
        echo 0123456789abcdef ;;
esac
"""

FAKE_SYSTEMCTL = r"""#!/bin/bash
printf 'systemctl %s\n' "$*" >> "$FAKE_LOG"
case "$1" in
    is-enabled) [ -f "$FAKE_STATE.$2" ] && echo enabled && exit 0; echo disabled; exit 1 ;;
    enable) touch "$FAKE_STATE.$2" ;;
esac
"""

FAKE_SIMPLE = r"""#!/bin/bash
printf '%s %s\n' "$(basename "$0")" "$*" >> "$FAKE_LOG"
"""


class FakeBin:
    def __init__(self, tmp: Path):
        self.dir = tmp / "fakebin"
        self.dir.mkdir()
        self.log = tmp / "fake.log"
        self.stdin = tmp / "fake.stdin"
        self.log.touch()
        self.stdin.touch()
        for name, body in (("docker", FAKE_DOCKER), ("systemctl", FAKE_SYSTEMCTL), ("curl", FAKE_SIMPLE),
                           ("journalctl", FAKE_SIMPLE)):
            (self.dir / name).write_text(body)
            (self.dir / name).chmod(0o755)
        self.env = {"PATH": f"{self.dir}:{os.environ.get('PATH', GUEST_PATH)}", "FAKE_LOG": str(self.log),
                    "FAKE_STDIN": str(self.stdin), "FAKE_STATE": str(tmp / "fake.state")}

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def fakebin(tmp_path: Path) -> FakeBin:
    return FakeBin(tmp_path)
