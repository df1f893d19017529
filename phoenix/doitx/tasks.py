"""doit tasks for the layers: one task per guest, `ctNNN`, parents as task_dep, the host as uptodate."""

from __future__ import annotations

import atexit
import inspect
import signal
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PhoenixError
from ..plan import Action, Decision
from ..runtime import Run
from .reporter import PhoenixReporter

RUN: Run | None = None


def current() -> Run:
    if RUN is None:
        raise RuntimeError("no Phoenix run: dodo.py has not called phoenix.doitx.tasks.setup()")
    return RUN


class LayerCheck:
    """doit uptodate callable: is the layer on the host as the config wants it? (str() says why not)."""

    # doit asks each uptodate callable for its signature, once per task and run; this one takes no arguments.
    __signature__ = inspect.Signature()

    def __init__(self, run: Run, ctid: int):
        self.run, self.ctid = run, ctid
        self.decision: Decision | None = None

    def __call__(self) -> bool:
        self.decision = self.run.up_to_date(self.ctid)
        return self.decision.action == Action.OK

    def __str__(self) -> str:
        return self.decision.summary if self.decision else f"ct{self.ctid} compared with the host"


def layer_tasks(run: Run) -> list[dict[str, Any]]:
    tasks = []
    for ctid, layer in run.layers.items():
        tasks.append({
            "basename": layer.task,
            "doc": layer.doc,
            "actions": [(run.execute, [ctid])],
            "task_dep": [f"ct{layer.parent}"] if layer.parent is not None else [],
            "uptodate": [LayerCheck(run, ctid)],
            "verbosity": 2,
            "meta": {"ctid": ctid},
        })
    return tasks


def setup(root: Path, *, process: bool = True, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    """Called by dodo.py: the run, doit's config and the task generator.

    process=False (tests running doit in-process) leaves signal handlers and atexit alone.
    """
    global RUN
    try:
        RUN = Run(root, **kwargs)
    except PhoenixError as e:  # e.g. a malformed PHOENIX_SIM_TASK_SECONDS
        print(f"phoenix: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    cache = RUN.cache
    cache.mkdir(parents=True, exist_ok=True)
    if process:
        # doit saves its state only when a run ends; SIGTERM becomes KeyboardInterrupt so it ends cleanly.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        atexit.register(RUN.close)
    try:
        RUN.layers  # noqa: B018 - validate (unless cached) before doit does anything; touches nothing on the host
    except ConfigError as e:
        print(f"phoenix: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    config = {
        "dep_file": str(cache / "doit.db"),
        "backend": "sqlite3",
        "par_type": "thread",
        "reporter": PhoenixReporter,
        "default_tasks": [f"ct{c}" for c in RUN.layers],
        "verbosity": 2,
    }

    def task_layers():
        """Proxmox layers (one task per guest)."""
        yield from layer_tasks(RUN)

    return config, task_layers
