"""Rebuilds a person asked for with `doit forget`: kept in .cache/forced.json until each is done.

Phoenix decides from the host, not from doit's database, so forgetting doit's state alone would change
nothing. A damaged file is said once and started anew (a forced rebuild is then asked for again).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from .cachefiles import write_whole


class Forced:
    """The keys of resources to rebuild at the next run (thread-safe)."""

    def __init__(self, path: Path, say: Callable[[str], None]):
        self.path, self._say = path, say
        self._lock = threading.Lock()
        self._keys: frozenset[str] | None = None

    def keys(self) -> frozenset[str]:
        with self._lock:
            if self._keys is None:
                self._keys = self._read()
            return self._keys

    def _read(self) -> frozenset[str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return frozenset()
        except (OSError, ValueError) as e:
            data = e
        if isinstance(data, list) and all(isinstance(k, str | int) and not isinstance(k, bool) for k in data):
            return frozenset(k if isinstance(k, str) else f"ct{k}" for k in data)  # CTIDs: as Phoenix wrote it before
        self._say(f"phoenix: {self.path} is damaged (expected a list of task names, found {str(data)[:60]!r}); "
                  "it was reset: run `doit forget TASK` again for a rebuild you had asked for")
        write_whole(self.path, b"[]")
        return frozenset()

    def add(self, keys: Iterable[str]) -> None:
        self._write(self.keys() | set(keys))

    def done(self, key: str) -> None:
        if key in self.keys():
            self._write(self.keys() - {key})

    def _write(self, keys: frozenset[str] | set[str]) -> None:
        with self._lock:
            write_whole(self.path, json.dumps(sorted(keys)).encode())
            self._keys = frozenset(keys)
