"""The live status line on a terminal (doitx/live.py): erased before each of the run's lines and drawn again after,
gone before the summary; never on a pipe, a log, in CI, or with TERM=dumb or PHOENIX_PLAIN."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from phoenix.doitx.live import ERASE, LiveStream, SideStream, status_of, wanted
from phoenix.doitx.progress import seconds

from .conftest import REPO, copy_project


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_status_is_erased_before_each_write_and_drawn_after_whole_lines_only() -> None:
    out = Tty()
    live = LiveStream(out, width=lambda: 40)
    live.follow(lambda: "phoenix: 1/3 done")
    live.write("a\n")
    live.write("par")             # a line not ended yet: the status waits for its newline
    live.write("tial\n")
    live.close_status()
    live.write("summary\n")
    assert out.getvalue() == ("phoenix: 1/3 done" + ERASE + "a\nphoenix: 1/3 done" + ERASE + "par" + "tial\n"
                              "phoenix: 1/3 done" + ERASE + "summary\n")


def test_a_long_status_is_cut_to_the_terminal_and_stderr_keeps_out_of_its_way() -> None:
    out, err = Tty(), Tty()
    live = LiveStream(out, width=lambda: 20)
    live.follow(lambda: "x" * 50)
    assert out.getvalue() == "x" * 18 + "…"
    SideStream(live, err).write("a note\n")
    assert err.getvalue() == "a note\n" and out.getvalue().endswith(ERASE + "x" * 18 + "…")


def test_the_status_says_how_far_the_run_is_and_what_runs_longest_first() -> None:
    assert status_of(17, 3, {"ct910": 12.0, "ct920": 90.0}, 245.0, seconds) == \
        "phoenix: 3/17 done, 2 running: ct920 1m30s, ct910 12.00s (run 4m05s)"
    assert status_of(17, 0, {}, 1.0, seconds) == ""


@pytest.mark.parametrize("env, tty, expected", [
    ({"TERM": "xterm"}, True, True), ({"TERM": "xterm", "CI": "true"}, True, False),
    ({"TERM": "dumb"}, True, False), ({"TERM": "xterm", "PHOENIX_PLAIN": "1"}, True, False),
    ({"TERM": "xterm"}, False, False)])
def test_only_a_terminal_outside_ci_gets_the_live_line(env: dict, tty: bool, expected: bool) -> None:
    stream = Tty() if tty else io.StringIO()
    assert wanted(stream, env) is expected


def in_a_terminal(root: Path, **extra: str) -> str:
    """`doit` with its stdout and stderr on a pseudo-terminal, as a person runs it; all it printed."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_") and k != "CI"}
    env.update({"PYTHONPATH": str(REPO), "TERM": "xterm", **extra})
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-n", "2"], cwd=root, stdin=slave, stdout=slave,
                            stderr=slave, env=env)
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the other end closed
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        assert proc.wait(120) == 0, out.decode(errors="replace")
    finally:
        os.close(master)
    return out.decode(errors="replace")


def test_a_run_on_a_terminal_keeps_a_live_line_and_leaves_only_its_lines_and_summary(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "phoenix")
    said = in_a_terminal(root)
    assert ERASE in said and "phoenix: 6/6 done (run " in said, said
    tail = said.rsplit(ERASE, 1)[1]          # after the last erase: the summary alone, no status left behind
    assert tail.startswith("phoenix: 6 built, 0 updated") and "done (run" not in tail, tail
    plain = in_a_terminal(root, CI="true")   # a CI job's terminal: the plain lines alone
    assert ERASE not in plain and "phoenix: nothing to do, the host matches the config" in plain
