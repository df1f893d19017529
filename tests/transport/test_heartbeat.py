"""A script silent in its guest (real SSH, the stand-in pct of conftest.py) gets a heartbeat line under its task's name
at least every heartbeat_s, and none once it talks or ends."""

from __future__ import annotations

import re
from pathlib import Path

from phoenix.builder import BuildContext, Builder
from phoenix.steps import Script

from .conftest import SshServer
from .runs import Lines, make_run


def test_a_silent_script_gets_a_heartbeat_under_its_task(sshd: SshServer, node, tmp_path: Path):
    sshd.make_ct(950)
    run = make_run(tmp_path, 950, 'phx_log start\nsleep 1.7\nphx_log middle\nsleep 1.3\nphx_log end\n', name="vllm")
    out = Lines()
    ctx = BuildContext(None, node, None, None, out, lambda names, required: {},  # type: ignore[arg-type]
                       lambda key: tmp_path / ".cache" / "logs" / f"{key}.log", heartbeat_s=0.5)
    step = Script("feature vllm", 950, "ct950", "vllm", run.script, run.lib, run.context, timeout=60)
    Builder(ctx, "ct950").run([step])
    beats = [i for i, line in enumerate(out) if "still at" in line]
    assert all(re.fullmatch(r"ct950  … still at feature vllm: [\d.]+s, no output for [\d.]+s", out[i]) for i in beats), out
    start, middle, end = (out.index(f"[ct950 vllm] {w}") for w in ("start", "middle", "end"))
    # silent for 1.7 s, then 1.3 s, at an interval of 0.5 s: beats in both silences, none before the script talks
    assert any(start < i < middle for i in beats) and any(middle < i < end for i in beats), out
    silent = out.times[end] - out.times[start]  # at most one beat per interval of silence
    assert 3 <= len(beats) <= silent / 0.5 + 1, out
    assert re.fullmatch(r"ct950  feature vllm  [\d.]+s", out[-1]) and end == len(out) - 2, out
