"""A root file system booted with systemd as PID 1 (FACTS.md: `systemd-nspawn -b` does not work on this machine, an
unshare'd PID, mount, UTS, IPC and network namespace does): services really start, as in a Proxmox container.

The network namespace is the guest's own (only `lo`), so nothing it does — a Docker daemon's bridge or iptables
rules — reaches this machine; its mounts live in its own mount namespace and go with it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from phoenix.transport.base import RUN_DIR, SCRIPT_ENV

from .conftest import GUEST_PATH

CONTROLLERS = ("memory", "devices", "pids", "blkio", "cpuset", "freezer")   # cpu,cpuacct would not mount here

BOOT = r"""
set -e
R="$1"
mount --make-rprivate /
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mount -t tmpfs -o mode=755 tmpfs "$R/sys/fs/cgroup"
mkdir -p "$R/sys/fs/cgroup/systemd"
mount -t cgroup -o none,name=systemd cgroup "$R/sys/fs/cgroup/systemd"
for c in CONTROLLERS; do
    mkdir -p "$R/sys/fs/cgroup/$c"
    mount -t cgroup -o "$c" cgroup "$R/sys/fs/cgroup/$c" || echo "cgroup $c not mounted" >&2
done
mount --rbind /dev "$R/dev"
ip link set lo up 2>/dev/null || true
exec chroot "$R" /usr/bin/env -i container=phoenix-test /lib/systemd/systemd
""".replace("CONTROLLERS", " ".join(CONTROLLERS))


class Booted:
    """ROOT booted: run commands inside with sh(), scripts with run_script(); poweroff() ends it."""

    def __init__(self, root: Path, log: Path):
        self.root = root
        self.log = log
        self.proc = subprocess.Popen(["unshare", "-p", "-f", "-m", "-u", "-i", "-n", "--mount-proc",
                                      "sh", "-c", BOOT, "boot", str(root)],
                                     stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self._child()

    def _child(self) -> int:
        for _ in range(100):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            if children.exists() and children.read_text().split():
                return int(children.read_text().split()[0])
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"the guest did not start:\n{self.log.read_text()}")

    def argv(self, *cmd: str) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-p", "-m", "-u", "-i", "-n", "chroot", str(self.root),
                "/usr/bin/env", "-i", f"PATH={GUEST_PATH}", "HOME=/root", *cmd]

    def sh(self, command: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv("/bin/bash", "-c", command), text=True, capture_output=True, check=check,
                              timeout=timeout)

    def wait_running(self, timeout: float = 120) -> str:
        state = ""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            state = self.sh("systemctl is-system-running 2>/dev/null || true", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(1)
        raise RuntimeError(f"systemd did not come up (state {state!r}):\n{self.log.read_text()[-3000:]}")

    def run_script(self, script: Path, name: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        name = name or script.stem
        guest = f"{RUN_DIR}/{name}"
        target = self.root / guest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(script.read_bytes())
        env = [f"{k}={v}" for k, v in SCRIPT_ENV.items()]
        r = subprocess.run(self.argv(*env, "/bin/bash", guest), text=True, capture_output=True, timeout=900)
        print(f"--- {name} (exit {r.returncode})\n{r.stdout}\n{r.stderr}")
        if check and r.returncode != 0:
            raise AssertionError(f"{name} failed ({r.returncode})\n{r.stdout}\n{r.stderr}")
        return r

    def poweroff(self, timeout: float = 60) -> None:
        if self.proc.poll() is None:
            self.sh("systemctl poweroff --no-block", check=False, timeout=30)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)     # our own process group: unshare and the guest's init
                self.proc.wait(timeout=30)
