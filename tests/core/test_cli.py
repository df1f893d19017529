"""The real `doit` command in a fresh copy of the project, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO, copy_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "phoenix")


def doit(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=root, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_build_then_noop_then_plan(project: Path):
    first = doit(project)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "target is the SIMULATED Proxmox host" in first.stdout
    assert "6 built" in first.stdout
    second = doit(project)
    assert second.returncode == 0
    assert "nothing to do" in second.stdout and "1 API requests" in second.stdout
    last = json.loads((project / ".cache" / "last-run.json").read_text())
    assert last["api_requests"] == 1 and {t["outcome"] for t in last["tasks"].values()} == {"up-to-date"}
    # deleting the cache never breaks anything: the simulated host's state goes with it, so all is built again
    shutil.rmtree(project / ".cache")
    third = doit(project, "-n", "4")
    assert third.returncode == 0 and "6 built" in third.stdout


def test_bad_config_exits_2_with_the_problem(project: Path):
    path = project / "etc" / "phoenix_lxc_configs.json"
    path.write_text(path.read_text().replace('"cores": 8', '"cores": 0'))
    result = doit(project)
    assert result.returncode == 2
    assert 'lxc_configs.950.cores: Input should be greater than or equal to 1 (got 0)' in result.stderr
    assert not (project / ".cache" / "sim" / "state.json").exists()


def test_sigterm_mid_run_then_rerun_converges(project: Path):
    env = {"PHOENIX_SIM_TIME_SCALE": "0.05", "PHOENIX_SIM_TASK_SECONDS": "clone=20,snapshot=5"}
    proc = subprocess.Popen([sys.executable, "-m", "doit"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO), **env})
    deadline = time.monotonic() + 60
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if "clone from ct900" in line or not line:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    seen += out
    assert proc.returncode != 0
    # the run ends cleanly: the summary and last-run.json say what was built and what was cut off
    assert "0 failed, 1 interrupted" in seen and "phoenix: INTERRUPTED during ct90" in seen, seen
    last = json.loads((project / ".cache" / "last-run.json").read_text())
    outcomes = {k: v["outcome"] for k, v in last["tasks"].items()}
    assert list(outcomes.values()).count("interrupted") == 1 and "failed" not in outcomes.values(), outcomes
    assert last["interrupted"] is True
    result = doit(project)
    assert result.returncode == 0, result.stdout + result.stderr
    again = doit(project)
    assert "nothing to do" in again.stdout, again.stdout
