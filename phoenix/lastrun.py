"""What a run did, task by task: the summary line and .cache/last-run.json."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from .cachefiles import write_whole
from .pve.counters import Counters

OUTCOMES = ("built", "restored", "updated", "up-to-date", "failed", "interrupted")


def dumps_last_run(data: dict[str, Any]) -> str:
    """last-run.json with one line per task: readable, and written by json's fast encoder."""
    head = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in data.items() if k != "tasks")
    tasks = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in data["tasks"].items())
    return f"{{\n{head},\n  \"tasks\": {{\n{tasks}\n  }}\n}}\n" if tasks else f"{{\n{head},\n  \"tasks\": {{}}\n}}\n"


class Outcomes:
    """Each task's outcome in this run (thread-safe)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._tasks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.interrupted = False  # the run was stopped (Ctrl-C, SIGTERM) before it ended

    def note(self, key: str, outcome: str, seconds: float = 0.0, identity: str | None = None) -> None:
        with self._lock:
            self._tasks[key] = {"outcome": outcome, "seconds": round(seconds, 3), "identity": identity}

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._tasks.get(key)
            return dict(found) if found is not None else None

    def of(self, outcome: str) -> list[str]:
        with self._lock:
            return sorted(k for k, v in self._tasks.items() if v["outcome"] == outcome)

    def summary(self, target: str, counters: Counters) -> dict[str, Any]:
        with self._lock:
            tasks = dict(sorted(self._tasks.items()))
        return {"target": target, "api_requests": counters.total, "api_seconds": round(counters.seconds, 3),
                "wall_seconds": round(time.monotonic() - self.started, 3), "interrupted": self.interrupted, "tasks": tasks}


def write(path: Path, data: dict[str, Any]) -> None:
    write_whole(path, dumps_last_run(data).encode())
