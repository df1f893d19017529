"""A line now and then while a long step is silent: `ct950  … still at feature vllm: 1m30s, no output for 30s`.

The interval is PHOENIX_HEARTBEAT_SECONDS (30 by default), so a test can make it short."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from types import TracebackType

ENV = "PHOENIX_HEARTBEAT_SECONDS"
DEFAULT_S = 30.0


def interval_from_env() -> float:
    try:
        found = float(os.environ.get(ENV) or DEFAULT_S)
    except ValueError:
        return DEFAULT_S
    return found if found > 0 else DEFAULT_S


def _span(s: float) -> str:
    if s < 10:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    return f"{m}m{sec:02d}s" if m else f"{sec}s"


class Heartbeat:
    """While the block runs, say a line whenever nothing was said (touch) for `interval` seconds."""

    def __init__(self, say: Callable[[str], None], label: str, what: str, interval: float,
                 clock: Callable[[], float] = time.monotonic):
        self._say, self.label, self.what, self.interval, self._clock = say, label, what, interval, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = self.last = clock()

    def touch(self) -> None:
        self.last = self._clock()

    def _beat(self) -> None:
        while not self._stop.wait(max(0.01, self.last + self.interval - self._clock())):
            now = self._clock()
            if now - self.last >= self.interval:
                self._say(f"{self.label} … still at {self.what}: {_span(now - self.started)}, "
                          f"no output for {_span(now - self.last)}")
                self.last = now

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._beat, name=f"phoenix-heartbeat-{self.label.strip()}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1)
