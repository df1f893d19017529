"""The bare doit the no-op benchmark compares with: one task per guest, the same task_dep shape, nothing else.

Imports nothing of Phoenix's, so `doit -f` of a dodo made from it starts up as any bare doit does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def bare_tasks(shape: dict[int, int | None]):
    """A task generator: one task per guest, the same task_dep shape, up to date once it has run."""

    def action() -> None:
        return None

    def task_layers():
        """Bare tasks."""
        for ctid, parent in shape.items():
            yield {"basename": f"ct{ctid}", "doc": f"bare task {ctid}", "actions": [(action, [])],
                   "task_dep": [f"ct{parent}"] if parent is not None else [], "uptodate": [True], "verbosity": 2}

    return task_layers


def bare_config(dep_file: Path, shape: dict[int, int | None]) -> dict[str, Any]:
    """Phoenix's doit settings (sqlite3 dep file, threads), with doit's own reporter."""
    return {"dep_file": str(dep_file), "backend": "sqlite3", "par_type": "thread",
            "default_tasks": [f"ct{c}" for c in shape], "verbosity": 2}
