"""On a terminal, one live status line under the run's stream: what runs now and for how long, redrawn every second.

Every line the run prints (tasks starting and ending, steps, script output, heartbeats) is still printed as it is;
the status line sits below them, is erased before each write and drawn again after it, and is gone when the run
ends. It is used only when stdout is a terminal, `CI` is not set, TERM is not `dumb` and PHOENIX_PLAIN is not set:
a log, a pipe or a CI job gets the plain lines alone.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from typing import TextIO

ERASE = "\r\x1b[2K"   # to the line's start, then clear it (VT100, as every terminal emulator reads it)
REDRAW_SECONDS = 1.0


def wanted(stream: TextIO, env: dict[str, str] | None = None) -> bool:
    """Whether a live line belongs on this stream."""
    env = dict(os.environ) if env is None else env
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and not env.get("CI") and env.get("TERM", "") != "dumb" and not env.get("PHOENIX_PLAIN")


class LiveStream:
    """A text stream that keeps one status line below what is written to it (thread-safe)."""

    def __init__(self, stream: TextIO, width: Callable[[], int] | None = None):
        self.stream = stream
        self._width = width or (lambda: shutil.get_terminal_size((100, 24)).columns)
        self._status: Callable[[], str] | None = None
        self._shown = False          # the status line is on the screen
        self._line_open = False      # the last write did not end its line: the status waits for the newline
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # what the run writes
    def write(self, text: str) -> int:
        with self._lock:
            self._erase()
            self.stream.write(text)
            if text:
                self._line_open = not text.endswith("\n")
            self._draw()
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self.stream.flush()

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.stream.fileno()

    def writelines(self, lines: list[str]) -> None:
        self.write("".join(lines))

    def __getattr__(self, name: str) -> object:  # the rest of a text stream (encoding, buffer, ...) is the terminal's
        return getattr(self.stream, name)

    # the status
    def follow(self, status: Callable[[], str]) -> None:
        """Show status() from now on, redrawn every second."""
        with self._lock:
            self._status = status
            self._draw()
            self.stream.flush()
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="phoenix-live-line", daemon=True)
            self._ticker.start()

    def close_status(self) -> None:
        """The run ends: the status line goes, and stays gone."""
        self._stop.set()
        with self._lock:
            self._erase()
            self._status = None
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(REDRAW_SECONDS):
            with self._lock:
                self._erase()
                self._draw()
                self.stream.flush()

    def _erase(self) -> None:
        if self._shown:
            self.stream.write(ERASE)
            self._shown = False

    def _draw(self) -> None:
        if self._status is None or self._line_open:
            return
        try:
            text = self._status()
        except Exception:  # a status that cannot be made is not shown; the run's lines go on
            return
        if text:
            width = max(self._width() - 1, 10)
            self.stream.write(text if len(text) <= width else text[:width - 1] + "…")
            self._shown = True


class SideStream:
    """Another stream on the same terminal (stderr): its writes erase the status line first and draw it after."""

    def __init__(self, live: LiveStream, stream: TextIO):
        self.live, self.stream = live, stream

    def write(self, text: str) -> int:
        with self.live._lock:
            self.live._erase()
            self.live.stream.flush()
            self.stream.write(text)
            self.stream.flush()
            if text.endswith("\n"):
                self.live._draw()
                self.live.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return True

    def writelines(self, lines: list[str]) -> None:
        self.write("".join(lines))

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)


def status_of(total: int, done: int, running: dict[str, float], elapsed: float,
              seconds: Callable[[float], str]) -> str:
    """`phoenix: 3/17 done, 2 running: ct920 1m30s, ct910 12.00s (run 4m05s)`; "" before anything runs."""
    if not running and not done:
        return ""
    now = ", ".join(f"{name} {seconds(t)}" for name, t in sorted(running.items(), key=lambda kv: -kv[1]))
    return (f"phoenix: {done}/{total} done" + (f", {len(running)} running: {now}" if running else "")
            + f" (run {seconds(elapsed)})")
