"""The run of this process: made by dodo.py's setup(), used by the reporter and Phoenix's doit commands."""

from __future__ import annotations

from ..runtime import Run

RUN: Run | None = None


def install(run: Run) -> None:
    global RUN
    RUN = run


def current() -> Run:
    if RUN is None:
        raise RuntimeError("no Phoenix run: dodo.py has not called phoenix.doitx.tasks.setup()")
    return RUN
