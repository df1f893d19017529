"""What a run asked of the API: requests, retries, time waited. Shared by every client of one run."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Counters:
    """Requests made in this run (thread-safe)."""

    reads: int = 0
    writes: int = 0
    retries: int = 0
    seconds: float = 0.0  # waiting for responses, connections included
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total(self) -> int:
        return self.reads + self.writes

    def add(self, method: str, seconds: float = 0.0) -> None:
        with self.lock:
            if method == "GET":
                self.reads += 1
            else:
                self.writes += 1
            self.seconds += seconds

    def retried(self) -> None:
        with self.lock:
            self.retries += 1
