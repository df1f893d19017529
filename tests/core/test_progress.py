"""What a run shows while it works and what it records when it ends: `[n/N]` per task, each task's time and the run's,
a heartbeat while a step is silent, every request counted (the lease's release too), and a run stopped by Ctrl-C
recorded as interrupted (a real doit process, a slowed simulator)."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from phoenix.doitx.progress import Progress, scope, seconds

from .conftest import ALL_TASKS, REPO, Checkout, copy_project

START = re.compile(r"^\.  \[(\d+)/(\d+)\] (\S+): ", re.M)
SKIP = re.compile(r"^-- \[(\d+)/(\d+)\] (\S+): up to date$", re.M)
END = re.compile(r"^   \[(\d+)/(\d+)\] (\S+) (built|updated|restored|done) in ([\d.]+)s \(run ([\d.]+)s\)$", re.M)


def test_progress_numbers_each_task_once_and_times_it():
    now = [100.0]
    p = Progress(["a", "b", "c"], clock=lambda: now[0])
    assert p.start("a", "first") == "[1/3] a: first"
    now[0] += 2.5
    assert p.skip("b") == "[2/3] b: up to date"
    assert p.running() == {"a": 2.5}
    now[0] += 1
    assert p.end("a", "built") == "[1/3] a built in 3.50s (run 3.50s)"
    assert p.start("c", "") == "[3/3] c"
    now[0] += 61
    assert p.end("c", "FAILED") == "[3/3] c FAILED after 1m01s (run 1m04s)"
    assert p.running() == {}
    assert seconds(3723) == "1h02m03s"


def test_scope_is_the_selected_tasks_and_what_they_need():
    class T:
        def __init__(self, deps=(), actions=True):
            self.task_dep, self.setup_tasks, self.actions = list(deps), [], [1] if actions else []

    tasks = {"a": T(), "b": T(["a"]), "c": T(["b"]), "d": T(), "_hidden": T(), "group": T(["c"], actions=False)}
    assert scope(tasks, ["c"]) == ["a", "b", "c"]
    assert scope(tasks, ["group", "_hidden", "nosuch"]) == ["a", "b", "c"]


def test_a_run_numbers_every_task_times_each_and_counts_every_request(checkout: Checkout):
    mark = checkout.mark()
    result = checkout.doit()
    assert result.rc == 0, result.output
    starts = [(int(n), int(total), name) for n, total, name in START.findall(result.output)]
    ends = {name: (int(n), float(took), float(run)) for n, _t, name, _w, took, run in END.findall(result.output)}
    assert [n for n, _, _ in starts] == list(range(1, len(ALL_TASKS) + 1)), result.output
    assert {total for _, total, _ in starts} == {len(ALL_TASKS)}
    assert [name for *_, name in starts] == list(ALL_TASKS)
    assert set(ends) == set(ALL_TASKS) and all(ends[name][0] == n for n, _, name in starts), result.output
    runs = [ends[name][2] for name in ALL_TASKS]
    assert runs == sorted(runs) and all(took <= run for _, took, run in ends.values())
    assert all(f"{name} built in" in result.output for name in ALL_TASKS)
    # every request of the run is in the summary and the file, the lease's release included
    made = len(checkout.pve.requests) - mark
    assert result.last_run["api_requests"] == made, (result.last_run["api_requests"], made)
    assert f"; {made} API requests;" in result.output
    assert checkout.lease_writes(mark)[-1] == ("DELETE", "/api2/json/pools/phoenix-lease")
    assert result.last_run["interrupted"] is False

    again = checkout.doit()
    assert [int(n) for n, *_ in SKIP.findall(again.output)] == list(range(1, len(ALL_TASKS) + 1)), again.output
    assert not START.search(again.output) and not END.search(again.output)


def test_a_silent_step_gets_a_heartbeat_under_its_task(tmp_path: Path, monkeypatch):
    """The heartbeat interval is PHOENIX_HEARTBEAT_SECONDS (30 s by default): a create that takes 1.5 s, with an
    interval of 0.4 s, is said to be going on at least twice, under its task's name."""
    monkeypatch.setenv("PHOENIX_HEARTBEAT_SECONDS", "0.4")
    co = Checkout(tmp_path / "phoenix", {"time_scale": 0.1, "ct_secs": {"create": 15}})
    try:
        result = co.doit("ct900")
    finally:
        co.stop_sim()
    assert result.rc == 0, result.output
    beats = re.findall(r"^ct900  … still at create from \S+: [\d.]+s, no output for [\d.]+s$", result.output, re.M)
    assert len(beats) >= 2, result.output
    lines = result.output.splitlines()
    first = next(i for i, x in enumerate(lines) if "still at create" in x)
    done = next(i for i, x in enumerate(lines) if re.match(r"ct900  create from .*  [\d.]+s$", x))
    assert first < done and not any("still at" in x for x in lines[done:]), result.output


def read_until(proc: subprocess.Popen, pattern: str, timeout: float) -> str:
    """The process's output until a line matches (or it ends, or time is up)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out = ""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not re.search(pattern, out, re.M):
        if sel.select(timeout=0.2):
            chunk = os.read(proc.stdout.fileno(), 65536).decode()
            if not chunk:
                break
            out += chunk
    return out


def test_ctrl_c_prints_the_summary_and_records_what_was_done_and_what_was_interrupted(tmp_path: Path):
    root = copy_project(tmp_path / "phoenix")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    env.update(PYTHONPATH=str(REPO), PHOENIX_SIM_TIME_SCALE="0.1", PHOENIX_SIM_TASK_SECONDS="clone=100")
    proc = subprocess.Popen([sys.executable, "-m", "doit"], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        out = read_until(proc, r"^ct901  build: not on the host$", 120)
        assert "[1/6] ct900 built in" in out, out
        time.sleep(1)  # in the middle of the clone, which takes 10 s
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out += rest.decode()
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, out)
    assert "Traceback" not in out, out
    assert re.search(r"^phoenix: INTERRUPTED during ct901; not reached: ct902, ct910, ct920, ct950$", out, re.M), out
    assert re.search(r"^phoenix: 1 built, 0 updated, 0 up-to-date, 0 failed, 1 interrupted; \d+ API requests;", out,
                     re.M), out
    last = json.loads((root / ".cache" / "last-run.json").read_text())
    assert last["interrupted"] is True
    assert {k: v["outcome"] for k, v in last["tasks"].items()} == {"ct900": "built", "ct901": "interrupted"}
    assert last["tasks"]["ct901"]["seconds"] >= 1
