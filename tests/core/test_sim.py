"""The simulated host served in its own process (`python -m phoenix.sim`), and its task durations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from phoenix.errors import PhoenixError
from phoenix.sim.host import SERVER_FILE, SimHost, served, spawn

from .conftest import REPO, Checkout

ALL = ("ct900", "ct901", "ct902", "ct910", "ct920", "ct950")


def serve(state: Path, *args: str) -> subprocess.Popen:
    return spawn(state, *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def test_runs_use_a_served_simulator_and_its_state_outlives_it(tmp_path: Path):
    co = Checkout(tmp_path / "phoenix")
    state = co.cache / "sim"
    proc = serve(state)
    try:
        assert (state / SERVER_FILE).stat().st_mode & 0o777 == 0o600
        first = co.doit(own_sim=False)
        assert first.rc == 0, first.output
        assert f"served by process {proc.pid}" in first.output
        assert set(first.outcomes().values()) == {"built"}
        assert co.sim.endpoint is None  # this process started no simulator of its own
        assert co.doit(own_sim=False).outcomes() == dict.fromkeys(ALL, "up-to-date")
        # a second server for the same state is refused
        again = subprocess.run([sys.executable, "-m", "phoenix.sim", "--state-dir", str(state)], cwd=REPO,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and f"already served by process {proc.pid}" in again.stdout
    finally:
        out = stop(proc)
    assert "simulated Proxmox host at https://127.0.0.1:" in out
    assert not (state / SERVER_FILE).exists()
    # the server saved its state: the in-process simulator of the next run finds the estate built
    second = co.doit()
    try:
        assert second.rc == 0 and second.outcomes() == dict.fromkeys(ALL, "up-to-date"), second.output
        assert "served by process" not in second.output
    finally:
        co.stop_sim()


def test_a_noop_doit_imports_no_config_models_and_no_simulator(tmp_path: Path):
    """`doit` on a built estate decides from .cache/ and one listing made with the standard library: no pydantic,
    YAML, Jinja or SSH imports, and not requests or proxmoxer either."""
    co = Checkout(tmp_path / "phoenix")
    proc = serve(co.cache / "sim")
    try:
        assert co.doit(own_sim=False).rc == 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "doit", "-n", "2"], cwd=co.root, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        stop(proc)
    assert done.returncode == 0 and "nothing to do" in done.stdout, done.stdout + done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert {"doit", "phoenix.runtime", "phoenix.pve.reader"} <= imported  # the listing of -X importtime is read right
    heavy = {"pydantic", "yaml", "jinja2", "paramiko", "fakepve", "aiohttp", "asyncio", "requests", "urllib3",
             "proxmoxer", "phoenix.config.estate", "phoenix.builder", "phoenix.transport.ssh", "phoenix.pve.client"}
    assert not heavy & imported


def test_a_stale_server_file_is_ignored(tmp_path: Path):
    state = tmp_path / "sim"
    state.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"pid": int(dead.stdout), "endpoint": {"url": "https://127.0.0.1:9", "node": "pve1", "token_id": "root@pam!phoenix",
              "token_file": str(state / "token"), "verify": str(state / "fakepve.crt")}}
    (state / SERVER_FILE).write_text(json.dumps(record))
    assert served(state) is None  # the process is gone
    record["pid"] = os.getpid()  # alive, but not a simulator (a reused pid)
    (state / SERVER_FILE).write_text(json.dumps(record))
    assert served(state) is None
    (state / SERVER_FILE).write_text("{not json")
    assert served(state) is None


def test_task_durations_apply_to_every_container(tmp_path: Path):
    co = Checkout(tmp_path / "phoenix", sim_options={"ct_secs": {"start": 5, "shutdown": 3, "create": 20}})
    try:
        assert co.doit().rc == 0
        cts = co.pve.cts
        assert len(cts) == 6 and {(ct.start_secs, ct.shutdown_secs) for ct in cts} == {(5, 3)}
        assert co.pve.ct_secs["create"] == 20
    finally:
        co.stop_sim()


def test_unknown_task_durations_are_refused(tmp_path: Path):
    with pytest.raises(PhoenixError, match="unknown simulated task boot: durations can be set for create"):
        SimHost(tmp_path, ct_secs={"boot": 5})
    bad = subprocess.run([sys.executable, "-m", "phoenix.sim", "--state-dir", str(tmp_path), "--task-seconds", "boot=5"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown simulated task boot" in bad.stdout
    with pytest.raises(PhoenixError, match="did not start"):  # spawn() says so instead of waiting forever
        spawn(tmp_path / "sim", "--task-seconds", "boot=5", stdout=subprocess.DEVNULL)


def test_task_seconds_from_the_environment_are_checked(tmp_path: Path, monkeypatch, capsys):
    from phoenix.doitx import tasks
    from phoenix.runtime import sim_options_from_env

    monkeypatch.setenv("PHOENIX_SIM_TASK_SECONDS", "create=20, clone=10")
    assert sim_options_from_env()["ct_secs"] == {"create": 20.0, "clone": 10.0}
    monkeypatch.setenv("PHOENIX_SIM_TASK_SECONDS", "create20")
    with pytest.raises(SystemExit) as stop:
        tasks.setup(REPO, process=False, cache_dir=tmp_path / ".cache")
    assert stop.value.code == 2
    assert "PHOENIX_SIM_TASK_SECONDS: expected name=seconds, got 'create20'" in capsys.readouterr().err


def test_a_client_that_goes_away_mid_request_is_no_traceback_of_the_simulator():
    """An interrupted run drops its connection mid-request: aiohttp's server log of it is not shown."""
    import logging

    from phoenix.sim.host import _lost_connection

    def record(exc: BaseException | None) -> logging.LogRecord:
        return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", (),
                                 (type(exc), exc, None) if exc else None)

    assert _lost_connection(record(ConnectionResetError("Connection lost"))) is False
    assert _lost_connection(record(ValueError("a real bug"))) is True
    assert _lost_connection(record(None)) is True


def test_a_remote_target_never_imports_the_simulator(tmp_path: Path):
    """fakepve (AGPL-3.0) is only an optional extra: a run against a remote host (here a simulator served by another
    process, reached by URL, token and CA file as a real node is) imports neither fakepve nor phoenix.sim."""
    co = Checkout(tmp_path / "phoenix")
    state = tmp_path / "elsewhere"
    proc = serve(state)
    try:
        endpoint = json.loads((state / SERVER_FILE).read_text())["endpoint"]
        path = co.root / "etc" / "phoenix_hypervisor_config.json"
        data = json.loads(path.read_text())
        data["proxmox"] = {"target": "remote", "api_url": endpoint["url"], "node": endpoint["node"],
                           "token_id": endpoint["token_id"], "token_file": endpoint["token_file"],
                           "ca_file": endpoint["verify"]}
        path.write_text(json.dumps(data))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "doit", "plan"], cwd=co.root, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        stop(proc)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "SIMULATED" not in done.stdout and "build: not on the host" in done.stdout, done.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert {"doit", "phoenix.runtime", "phoenix.config.estate"} <= imported
    assert not {m for m in imported if m.split(".")[0] in ("fakepve", "aiohttp") or m.startswith("phoenix.sim")}
    assert not (co.cache / "sim").exists()


def test_every_task_the_readme_names_takes_a_duration(tmp_path: Path):
    """The README's --task-seconds names: create, clone, destroy, snapshot, delsnapshot, rollback, template, resize,
    migrate, start, shutdown, stop; each is accepted (as PHOENIX_SIM_TASK_SECONDS takes them too)."""
    import re

    text = (REPO / "README.md").read_text()
    listed = re.search(r"how many PVE seconds a task takes \(([a-z, \n]+)\)", text)
    assert listed is not None
    names = [n.strip() for n in listed.group(1).replace("\n", " ").split(",")]
    assert len(names) == 12, names
    from phoenix.sim.host import CT_POWER

    host = SimHost(tmp_path / "sim", ct_secs=dict.fromkeys(names, 1.0))  # refused if one were unknown
    host.start()
    try:
        tasks = [n for n in names if n not in CT_POWER]  # start, shutdown, stop: set on each container as it acts
        assert {n: host.pve.ct_secs[n] for n in tasks} == dict.fromkeys(tasks, 1.0)
        assert set(names) - set(tasks) == set(CT_POWER)
    finally:
        host.stop()
