"""Two runs against one host (two checkouts sharing a served simulator, as two CI jobs share a node): the second is
refused with the holder named, and nothing of the first run's work is destroyed. A run killed with SIGKILL holds
nothing: the next run on the machine breaks its lease at once and finishes the job."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phoenix.sim.host import SERVER_FILE, spawn

from .conftest import REPO, copy_project, doit_command

# A clone takes 5 s real: the first run is still cloning when the second starts, even on a loaded machine.
SLOW = ("--time-scale", "0.05", "--task-seconds", "clone=100,snapshot=4,create=10")


def checkout(root: Path) -> Path:
    return copy_project(root)


def env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}, "PYTHONPATH": str(REPO)}




def start(root: Path, *targets: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "doit", "-n", "2", *targets], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env())


def wait_for(proc: subprocess.Popen, text: str, timeout: float = 120) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if text in line or not line:
            return seen
    return seen


@pytest.fixture
def served(tmp_path: Path):
    a = checkout(tmp_path / "a")
    proc = spawn(a / ".cache" / "sim", *SLOW, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield a
    proc.terminate()
    proc.wait(30)


def test_a_second_run_is_refused_with_the_holder_named_and_destroys_nothing(served: Path, tmp_path: Path):
    a = served
    b = checkout(tmp_path / "b")  # another checkout of the same project, against the same host
    (b / ".cache" / "sim").mkdir(parents=True)
    shutil.copy(a / ".cache" / "sim" / SERVER_FILE, b / ".cache" / "sim" / SERVER_FILE)
    first = start(a)
    seen = wait_for(first, "clone from ct900")
    assert "clone from ct900" in seen, seen
    second = doit_command(b)
    out = second.stdout + second.stderr
    assert second.returncode == 1, out
    assert "Traceback" not in out
    pid = first.pid
    assert re.search(rf"(another Phoenix run is changing this host: run [0-9a-f]+ on \S+, pid {pid}|"
                     rf"being built right now by run [0-9a-f]+ on \S+, pid {pid})", out), out
    plan = doit_command(b, "plan")
    assert re.search(rf"blocked: being built right now by run [0-9a-f]+ on \S+, pid {pid}", plan.stdout), plan.stdout
    rest, _ = first.communicate(timeout=300)
    assert first.returncode == 0, seen + rest
    assert "6 built" in rest and "failed" not in rest.replace("0 failed", "")
    again = doit_command(a)
    assert "nothing to do" in again.stdout, again.stdout


def test_a_killed_run_holds_nothing_and_the_next_one_finishes(served: Path):
    """Two layers are enough: the run is killed while 901 is cloned; the next run breaks the lease, and finishes 901
    once the clone the killed run started (it goes on on the host) has ended."""
    a = served
    first = start(a, "ct901")
    seen = wait_for(first, "ct901  build:")  # printed before its clone starts, which takes 5 s
    assert "ct901  build:" in seen, seen
    time.sleep(1)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    deadline = time.monotonic() + 60
    while clone_running(a):  # a rerun meanwhile is refused, naming the clone (tests/core/test_kill_rerun.py)
        assert time.monotonic() < deadline
        time.sleep(0.1)
    result = doit_command(a, "ct901")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "breaking the host's lease of run" in out and f"(process {first.pid} is gone)" in out
    assert "nothing to do" in doit_command(a, "ct901").stdout


def clone_running(root: Path) -> bool:
    from phoenix.pve.client import Pve
    from phoenix.sim.host import served

    found = served(root / ".cache" / "sim")
    assert found is not None
    tasks = Pve.of(found[0]).get("nodes/pve1/tasks", source="active")
    return any(t.get("type") == "vzclone" and (t.get("status") == "running" or not t.get("endtime")) for t in tasks)
