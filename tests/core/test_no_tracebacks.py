"""Every failure a user can cause is one message with a documented exit code, never a traceback.

Each case runs the real `doit` command in a fresh copy of the project: the config cases must exit 2 before anything
is touched and name the file; the host cases exit 1 with the cause. The README's exit codes: 0 done, 1 a task failed
(or was refused), 2 bad configuration or settings, 3 a bad doit command line, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import NODE, REPO, Checkout, copy_project, doit_command

LXC = "phoenix_lxc_configs.json"
HYP = "phoenix_hypervisor_config.json"


def project(root: Path) -> Path:
    return copy_project(root)




def edit(root: Path, name: str, change: Callable[[dict], None]) -> None:
    path = root / "etc" / name
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def guest(ctid: str, **changes) -> Callable[[Path], None]:
    return lambda root: edit(root, LXC, lambda d: d["lxc_configs"][ctid].update(changes))


def raw(name: str, content: bytes) -> Callable[[Path], None]:
    return lambda root: (root / "etc" / name).write_bytes(content)


def directory(name: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / "etc" / name).unlink()
        (root / "etc" / name).mkdir()
    return make


CONFIG_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "negative memory": (guest("950", memory_mb=-1), 'lxc_configs.950.memory_mb'),
    "unknown key": (guest("950", memroy_mb=1), "did you mean 'memory_mb'"),
    "undefined parent": (guest("950", clone_from_ctid=999), "CT 999 is not defined"),
    "feature path": (guest("950", features=["../../../work/evil"]), 'lxc_configs.950.features[0]'),
    "app script path": (guest("950", application_script="../../../../../etc/passwd"), "application_script"),
    "bind mount of /": (guest("950", mount_points=[{"container_path": "/models", "host_path": "/"}]), "host_path"),
    "bind mount into /etc/pve": (guest("950", mount_points=[{"container_path": "/m", "host_path": "/fastData/../etc/pve"}]),
                                 "host_path"),
    "infinite timeout": (lambda root: (root / "etc" / LXC).write_text(
        (root / "etc" / LXC).read_text().replace('"cores": 8,', '"cores": 8, "feature_timeout_s": Infinity,')),
        "feature_timeout_s"),
    "description too long": (guest("950", description="x" * 7000), "6144"),
    "not UTF-8": (raw(LXC, b'{"lxc_configs": {"900": {"name": "\xff"}}}'), "UTF-8"),
    "deep nesting": (raw(LXC, b"[" * 100000), LXC),
    "a directory": (directory(LXC), "directory"),
    "duplicate key": (raw(HYP, b'{"timezone": "Etc/UTC", "timezone": "Europe/Paris"}'), "timezone"),
    "bad JSON": (raw(LXC, b'{"lxc_configs": {,}}'), "invalid JSON at line 1"),
    "empty file": (raw(LXC, b""), LXC),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_is_one_message_and_exit_2(tmp_path: Path, case: str):
    root = project(tmp_path / "p")
    change, expected = CONFIG_CASES[case]
    change(root)
    result = doit_command(root)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out and "Error" not in out.replace("ConfigError", ""), out
    assert expected in out, out
    assert str(root / "etc") in out  # names the file
    assert not (root / ".cache" / "sim" / "state.json").exists()  # touched nothing on the host


def test_bad_simulator_settings_exit_2(tmp_path: Path):
    result = doit_command(project(tmp_path / "p"), env={"PHOENIX_SIM_TASK_SECONDS": "create20"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "PHOENIX_SIM_TASK_SECONDS: expected name=seconds" in result.stderr


def remote(root: Path, token: Path) -> None:
    edit(root, HYP, lambda d: d["proxmox"].update(target="remote", api_url="https://127.0.0.1:9", token_file=str(token),
                                                  fingerprint=":".join(["AB"] * 32)))


def token_file(content: str | None, mode: int = 0o600) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        path = root / "etc" / "token.conf"
        if content is not None:
            path.write_text(content)
            path.chmod(mode)
        return path
    return make


HOST_CASES = {
    "token file readable by others": (token_file("secret\n", 0o644), "has mode 0644"),
    "token file readable by its group": (token_file("secret\n", 0o640), "has mode 0640"),
    "token file missing": (token_file(None), "does not exist"),
    "token file empty": (token_file("\n"), "is empty"),
}


@pytest.mark.parametrize("case", list(HOST_CASES))
def test_a_bad_token_file_is_one_message_and_exit_2(tmp_path: Path, case: str):
    root = project(tmp_path / "p")
    make, expected = HOST_CASES[case]
    remote(root, make(root))
    result = doit_command(root)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out  # bad settings, refused before any request (the README's exit codes)
    assert "Traceback" not in out and expected in out, out
    assert "Nothing on the host was touched" in out and "0 API requests" in out, out
    assert "secret" not in out.replace("secret file", "")  # the value is never shown


def test_a_refused_listing_is_one_message(built: Checkout):
    built.pve.fail("GET", "/api2/json/cluster/resources", 500, "internal error", times=10)
    result = built.doit()
    assert result.rc == 1 and "Traceback" not in result.output
    assert "Proxmox refused GET /cluster/resources: HTTP 500" in result.output
    result = built.doit("plan")
    assert "Traceback" not in result.output and "HTTP 500" in result.output


def test_sigterm_says_interrupted_and_rerun_to_finish(tmp_path: Path):
    root = project(tmp_path / "p")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    # A clone takes 600 s of simulated time (30 s real at this scale): once the base layer has started its log the
    # first clone is at most a second away, so a signal sent a second later surely lands mid-run, under any load.
    env.update(PYTHONPATH=str(REPO), PHOENIX_SIM_TIME_SCALE="0.05", PHOENIX_SIM_TASK_SECONDS="clone=600")
    proc = subprocess.Popen([sys.executable, "-m", "doit"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not (root / ".cache" / "logs" / "ct900.log").exists():
        time.sleep(0.05)
    time.sleep(1)
    assert proc.poll() is None, "the run ended before the signal: the clone was not slow enough"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, out, err)
    assert "Traceback" not in out + err, out + err
    assert "phoenix: interrupted; doit saved what was done: rerun to finish" in err
    assert "failed" in out  # the run's summary line came first
    assert NODE  # the same node the in-process tests use


@pytest.mark.parametrize("args", [("--no-such-option",), ("ct999",), ("plan", "--no-such-option")])
def test_a_bad_doit_command_line_exits_3_and_touches_nothing(tmp_path: Path, args: tuple[str, ...]):
    """The README's exit code 3: a bad doit command line (an unknown option, a task that does not exist)."""
    root = project(tmp_path / "p")
    result = doit_command(root, *args)
    out = result.stdout + result.stderr
    assert result.returncode == 3, out
    assert "Traceback" not in out and "ERROR: " in result.stderr, out
    assert not (root / ".cache" / "sim" / "state.json").exists()  # the host was not touched
