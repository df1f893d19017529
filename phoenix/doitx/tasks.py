"""doit tasks for the estate: one task per resource, named by its key (`ct950`), parents and dependencies as
task_dep, the host as uptodate. An expected failure reaches doit as its TaskFailed with Phoenix's message."""

from __future__ import annotations

import atexit
import inspect
import signal
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from doit.exceptions import TaskError, TaskFailed

from ..cachefiles import repair
from ..errors import ConfigError, PhoenixError, SettingsError
from ..plan import Action, Decision
from ..runtime import Run
from . import current
from .reporter import PhoenixReporter

INTERRUPTED = "phoenix: interrupted; doit saved what was done: rerun to finish"


class Check:
    """doit uptodate callable: is the resource on the host as the config wants it? (str() says why not).

    It never raises for an expected failure (doit would show a traceback): the failure makes the resource
    not up to date, and its action then fails with the message."""

    # doit asks each uptodate callable for its signature, once per task and run; this one takes no arguments.
    __signature__ = inspect.Signature()

    def __init__(self, run: Run, key: str):
        self.run, self.key = run, key
        self.decision: Decision | None = None
        self.error: PhoenixError | None = None

    def __call__(self) -> bool:
        try:
            self.decision = self.run.check(self.key)
        except PhoenixError as e:
            self.error = e
            return False
        return self.decision.action == Action.OK

    def __str__(self) -> str:
        if self.error is not None:
            return f"{self.key}: {self.error}"
        if self.decision is None:
            return f"{self.key} compared with the host"
        try:
            return self.run.explain(self.decision).summary
        except PhoenixError:
            return self.decision.summary


class SettingsRefused(TaskError):
    """Bad settings found before the run wrote anything: doit ends with its error code, 2, as for a bad config."""


def action(run: Run, key: str) -> dict[str, Any] | TaskFailed | TaskError:
    """doit's action: build the resource; an expected failure is doit's TaskFailed with one clear message, or
    SettingsRefused (exit 2) for bad settings while nothing was written to Proxmox or Portainer."""
    try:
        return run.execute(key)
    except PhoenixError as e:
        if isinstance(e, SettingsError) and not run.counters.writes and not run.portainer_counters.writes:
            return SettingsRefused(f"{e}\nNothing on the host was touched: fix the setting and run again.")
        return TaskFailed(str(e))


def resource_tasks(run: Run) -> list[dict[str, Any]]:
    tasks = []
    for key, res in run.resources.items():
        tasks.append({
            "basename": key,
            "doc": res.doc,
            "actions": [(action, [run, key])],
            "task_dep": ([res.parent] if res.parent is not None else []) + list(res.deps)
                        + ([f"cloudinit:{res.vmid}"] if res.kind == "vm" else []),
            "uptodate": [Check(run, key)],
            "verbosity": 2,
            "meta": {"kind": res.kind, "vmid": res.vmid},
        })
    return tasks


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """Ctrl-C and SIGTERM end a run with one line (doit saved its state before the interrupt got here)."""
    if issubclass(kind, KeyboardInterrupt):
        print(INTERRUPTED, file=sys.stderr)
        return
    sys.__excepthook__(kind, value, tb)


def _live_line() -> None:
    """On a terminal (not CI, not TERM=dumb, not PHOENIX_PLAIN), stdout keeps a live status line under the run's
    lines and stderr's writes keep out of its way (doitx/live.py)."""
    from . import current, live

    if current.LIVE is not None or not live.wanted(sys.stdout):
        return
    stream = live.LiveStream(sys.stdout)
    current.LIVE = stream
    sys.stdout = stream
    if live.wanted(sys.stderr):
        sys.stderr = live.SideStream(stream, sys.stderr)


def setup(root: Path, *, process: bool = True, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    """Called by dodo.py: the run, doit's config and the task generator.

    process=False (tests running doit in-process) leaves signal handlers, atexit and the excepthook alone.
    """
    if process and "out" not in kwargs:
        _live_line()
    try:
        run = Run(root, **kwargs)
    except PhoenixError as e:  # e.g. a malformed PHOENIX_SIM_TASK_SECONDS
        print(f"phoenix: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    current.install(run)
    cache = run.cache
    try:
        cache.mkdir(parents=True, exist_ok=True)
        repair(cache, run.say)
    except OSError as e:
        print(f"phoenix: cannot use the cache directory {cache}: {e.strerror}", file=sys.stderr)
        raise SystemExit(2) from None
    if process:
        # doit saves its state only when a run ends; SIGTERM becomes KeyboardInterrupt so it ends cleanly.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        sys.excepthook = _excepthook
        atexit.register(run.close)
    try:
        run.model  # noqa: B018 - validate (unless cached) before doit does anything; touches nothing on the host
    except ConfigError as e:
        print(f"phoenix: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    config = {
        "dep_file": str(cache / "doit.db"),
        "backend": "sqlite3",
        "par_type": "thread",
        "reporter": PhoenixReporter,
        "default_tasks": list(run.resources),
        "verbosity": 2,
    }

    def task_resources() -> Any:
        """Proxmox resources (one task each)."""
        yield from resource_tasks(run)
        from .cloudinit import cloudinit_tasks

        yield from cloudinit_tasks(run)

    return config, task_resources
