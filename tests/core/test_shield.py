"""A Ctrl-C while an ended or interrupted run writes its record is told and waited out (phoenix/doitx/shield.py):
last-run.json, the summary and the lease's release are done; another Ctrl-C in it leaves at once."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from phoenix import lease as L
from phoenix import runtime
from phoenix.doitx.shield import SAID, shielded

from .conftest import Checkout


def test_one_signal_is_said_and_waited_out_and_the_handlers_come_back():
    said: list[str] = []
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with shielded(said.append):
        os.kill(os.getpid(), signal.SIGINT)
        done = True   # the block goes on after the signal
    assert done and said == [SAID]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_second_signal_leaves_at_once():
    said: list[str] = []
    reached = False
    with pytest.raises(KeyboardInterrupt), shielded(said.append):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        reached = True
    assert not reached and said == [SAID]


def test_outside_the_main_thread_the_block_runs_as_it_is():
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with shielded(print):
                pass
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join(10)
    assert errors == []


def test_a_ctrl_c_while_the_run_writes_its_record_still_leaves_the_record_the_summary_and_no_lease(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    co = Checkout(tmp_path / "phoenix")
    finish = runtime.Run.finish

    def pressed_while_finishing(self):  # the Ctrl-C arrives just as the record is being written
        os.kill(os.getpid(), signal.SIGINT)
        return finish(self)

    monkeypatch.setattr(runtime.Run, "finish", pressed_while_finishing)
    result = co.doit()
    assert result.rc == 0, result.output
    assert SAID.strip() in result.output and "Traceback" not in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("phoenix: 6 built, 0 updated"), result.output
    assert json.loads((co.cache / "last-run.json").read_text())["tasks"]["ct950"]["outcome"] == "built"
    assert L.POOL not in co.pve.pools   # the lease was released
    co.stop_sim()
