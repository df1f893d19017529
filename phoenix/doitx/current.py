"""The run of this process: made by dodo.py's setup(), used by the reporter and Phoenix's doit commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..runtime import Run

if TYPE_CHECKING:
    from .live import LiveStream

RUN: Run | None = None
LIVE: LiveStream | None = None   # the terminal's live status line, when the run has one (doitx/live.py)


def install(run: Run) -> None:
    global RUN
    RUN = run


def current() -> Run:
    if RUN is None:
        raise RuntimeError("no Phoenix run: dodo.py has not called phoenix.doitx.tasks.setup()")
    return RUN
