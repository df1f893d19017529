"""The bare doits the no-op benchmark compares with: one task per guest, the same task_dep shape, nothing else.

Two kinds:
- "ran": `uptodate: [run_once]` (doit.tools). The first run executes each task once and doit records it; a
  no-op then finds every task's record and skips it. A doit project after its first build: the baseline.
- "never": `uptodate: [True]`. doit counts such a task as up to date before it has ever run, so the first
  run already skips it and the dep file stays empty: the cheapest no-op doit has, and a stricter yardstick.

Imports nothing of Phoenix's, so `doit -f` of a dodo made from it starts up as any bare doit does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doit.tools import run_once

KINDS = ("ran", "never")


def bare_tasks(shape: dict[int, int | None], kind: str = "ran"):
    """A task generator: one task per guest, the same task_dep shape, up to date as `kind` says."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    uptodate = run_once if kind == "ran" else True

    def action() -> None:
        return None

    def task_layers():
        """Bare tasks."""
        for ctid, parent in shape.items():
            yield {"basename": f"ct{ctid}", "doc": f"bare task {ctid}", "actions": [(action, [])],
                   "task_dep": [f"ct{parent}"] if parent is not None else [], "uptodate": [uptodate], "verbosity": 2}

    return task_layers


def bare_config(dep_file: Path, shape: dict[int, int | None]) -> dict[str, Any]:
    """Phoenix's doit settings (sqlite3 dep file, threads), with doit's own reporter."""
    return {"dep_file": str(dep_file), "backend": "sqlite3", "par_type": "thread",
            "default_tasks": [f"ct{c}" for c in shape], "verbosity": 2}
