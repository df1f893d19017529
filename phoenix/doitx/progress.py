"""A run's progress as plain lines (pure but for the clock): `[n/N]` for each task as it starts or is found up to
date, and the time it took when it ends, with the run's time so far.

N is every task the run may reach: the tasks asked for and what they depend on. Each task gets its number when
it starts (or is skipped), so the numbers count up in the order tasks come, whatever runs in parallel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def scope(tasks: Mapping[str, Any], selected: Iterable[str]) -> list[str]:
    """The tasks the run may reach, selected ones and their dependencies (task_dep, setup tasks), in a stable
    order; hidden tasks (`_…`) and tasks without actions are not counted."""
    seen: dict[str, None] = {}
    todo = list(selected)
    while todo:
        name = todo.pop()
        if name in seen or name not in tasks:
            continue
        seen[name] = None
        task = tasks[name]
        todo.extend(getattr(task, "task_dep", ()) or ())
        todo.extend(getattr(task, "setup_tasks", ()) or ())
    return [n for n in tasks if n in seen and n[:1] != "_" and getattr(tasks[n], "actions", None)]


def seconds(s: float) -> str:
    """1.23s, 4m05s, 1h02m03s."""
    if s < 60:
        return f"{s:.2f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s"


class Progress:
    """Numbers and times of the run's tasks (thread-safe)."""

    def __init__(self, names: Iterable[str], clock: Callable[[], float] = time.monotonic):
        self.names = list(names)
        self._clock = clock
        self.started = clock()
        self._number: dict[str, int] = {}
        self._t0: dict[str, float] = {}
        self._ended: set[str] = set()
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return len(self.names)

    def _tag(self, name: str) -> str:
        with self._lock:
            if name not in self._number:
                self._number[name] = len(self._number) + 1
            n = self._number[name]
        return f"[{n}/{max(self.total, n)}]"

    def start(self, name: str, doc: str) -> str:
        tag = self._tag(name)
        with self._lock:
            self._t0[name] = self._clock()
        return f"{tag} {name}: {doc}" if doc else f"{tag} {name}"

    def skip(self, name: str) -> str:
        tag = self._tag(name)
        with self._lock:
            self._ended.add(name)
        return f"{tag} {name}: up to date"

    def end(self, name: str, what: str) -> str:
        """`[3/17] ct902 built in 4.20s (run 9.85s)`; what: built, updated, done, FAILED."""
        tag = self._tag(name)
        now = self._clock()
        with self._lock:
            self._ended.add(name)
            took = now - self._t0.get(name, now)
        joint = "after" if what == "FAILED" else "in"
        return f"{tag} {name} {what} {joint} {seconds(took)} (run {seconds(now - self.started)})"

    def running(self) -> dict[str, float]:
        """The tasks started and not ended, with how long they have run (an interrupted run's interrupted tasks)."""
        now = self._clock()
        with self._lock:
            return {n: now - t for n, t in self._t0.items() if n not in self._ended}

    def done(self) -> int:
        """How many tasks have ended (or were found up to date)."""
        with self._lock:
            return len(self._ended)

    def elapsed(self) -> float:
        return self._clock() - self.started
