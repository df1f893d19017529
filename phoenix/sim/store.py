"""The simulator's saved state: state.json, plus a journal of the records changed since it was written.

A record is one guest, one storage's volumes or one pool, as JSON. A change appends the changed records to
`state.journal` (one line each, in one write), so saving costs what changed, not the size of the estate.
Reading takes state.json and replays the journal over it; compaction writes state.json anew (a temporary
file, fsynced, then renamed over it) and empties the journal. It happens at the simulator's start and stop,
and whenever the journal outgrows four times state.json.

Crash safety: state.json is only ever replaced whole, and a journal line is a whole record, so replaying a
journal twice gives the same state. A simulator killed at any moment loses at worst the change it was
writing: a torn last line is skipped with a note, as is any damaged line. A damaged state.json is kept aside
(state.json.damaged) with a note, and the journal is replayed over an empty host.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
JOURNAL_FILE = "state.journal"
FORMAT = 1
CT, VOLUMES, POOL, NODE, VM = "ct", "volumes", "pool", "node", "vm"  # kinds of record
KINDS = (CT, VOLUMES, POOL, NODE, VM)
MIN_JOURNAL = 1024 ** 2  # bytes; compaction when the journal outgrows this and 4x state.json

Key = tuple[str, str]  # (kind, id): ("ct", "901"), ("volumes", "local"), ("pool", "phoenix")


def dumps(value: Any) -> str:
    """A record as saved: one line, keys sorted."""
    return json.dumps(value, sort_keys=True)


def valid(kind: str, ident: str, value: Any) -> bool:
    """Whether a record has the shape the simulator loads."""
    if kind in (CT, VM):
        return (isinstance(value, dict) and isinstance(value.get("vmid"), int) and str(value["vmid"]) == ident
                and isinstance(value.get("config"), dict))
    if kind == VOLUMES:
        return isinstance(value, dict)
    if kind == POOL:
        return isinstance(value, dict) and isinstance(value.get("vmids", []), list)
    if kind == NODE:
        return isinstance(value, dict) and isinstance(value.get("state"), dict) and isinstance(value.get("storages"), dict)
    return False


@dataclass
class Stats:
    """What saving has cost since the store was made."""

    writes: int = 0          # writes of the state dir: journal appends and compactions
    bytes: int = 0           # bytes written
    seconds: float = 0.0     # time spent saving (added by the simulator, which also times its serialising)
    cpu_seconds: float = 0.0  # of which the saving thread ran (the rest: waiting for the disk, or for the GIL)
    compactions: int = 0


class Store:
    """The state files of one state dir. Not thread-safe: the simulator serialises its calls.

    `image` mirrors what the files hold, record by record, as saved text; `put` writes what differs from it.
    """

    def __init__(self, state_dir: Path, note: Callable[[str], None]):
        self.dir = Path(state_dir)
        self.note = note
        self.image: dict[Key, str] = {}
        self._ids: dict[str, dict[str, None]] = {kind: {} for kind in KINDS}  # the image's keys by kind, in order
        self.stats = Stats()
        self._fd: int | None = None
        self._journal_bytes = 0
        self._limit = MIN_JOURNAL

    @property
    def state_file(self) -> Path:
        return self.dir / STATE_FILE

    @property
    def journal_file(self) -> Path:
        return self.dir / JOURNAL_FILE

    def keys(self, kind: str) -> list[str]:
        """The ids of the saved records of one kind."""
        return list(self._ids[kind])

    def _index(self) -> None:
        self._ids = {kind: {} for kind in KINDS}
        for kind, ident in self.image:
            self._ids[kind][ident] = None

    # ------------------------------------------------------------- reading

    def read(self) -> dict[Key, Any]:
        """The saved records, in order: state.json's, then the journal's over them (a None-valued line removes one)."""
        values: dict[Key, Any] = {}
        self._read_state(values)
        self._replay(values)
        self.image = {key: dumps(value) for key, value in values.items()}
        self._index()
        self._journal_bytes = self.journal_file.stat().st_size if self.journal_file.exists() else 0
        return values

    def _read_state(self, values: dict[Key, Any]) -> None:
        path = self.state_file
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            aside = path.with_name(path.name + ".damaged")
            os.replace(path, aside)
            self.note(f"{path} is damaged ({e}): kept as {aside.name}; the host starts from its journal alone")
            return
        records: list[tuple[str, str, Any]] = []
        for item in data.get("cts") or []:
            records.append((CT, str(item.get("vmid")) if isinstance(item, dict) else "?", item))
        for item in data.get("vms") or []:
            records.append((VM, str(item.get("vmid")) if isinstance(item, dict) else "?", item))
        for name, volumes in (data.get("volumes") or {}).items():
            records.append((VOLUMES, name, volumes))
        for name, pool in (data.get("pools") or {}).items():
            records.append((POOL, name, pool))
        for name, node in (data.get("nodes") or {}).items():
            records.append((NODE, name, node))
        for kind, ident, value in records:
            if valid(kind, ident, value):
                values[(kind, ident)] = value
            else:
                self.note(f"{path}: {kind} {ident} is damaged: skipped")

    def _replay(self, values: dict[Key, Any]) -> None:
        path = self.journal_file
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return
        for number, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                kind, ident, value = entry["kind"], entry["id"], entry["v"]
                if kind not in KINDS or not isinstance(ident, str):
                    raise ValueError("not a record")
                if not (value is None or valid(kind, ident, value)):
                    raise ValueError(f"not a {kind} record")
            except (ValueError, KeyError, TypeError) as e:
                reason = "cut off" if number == raw.count(b"\n") + 1 else str(e)
                self.note(f"{path} line {number} is damaged ({reason}): skipped")
                continue
            if value is None:
                values.pop((kind, ident), None)
            else:
                values[(kind, ident)] = value  # a changed record keeps its place; a new one comes last, as in pve.cts

    # ------------------------------------------------------------- writing

    def put(self, changes: Mapping[Key, str | None], *, compact: bool = False) -> None:
        """Save the records that differ from the image (None: removed); compact=True writes state.json instead."""
        lines = []
        for key, text in changes.items():
            if text is None:
                if self.image.pop(key, None) is None:
                    continue
                del self._ids[key[0]][key[1]]
            elif self.image.get(key) == text:
                continue
            else:
                self.image[key] = text
                self._ids[key[0]][key[1]] = None
            lines.append(f'{{"kind": "{key[0]}", "id": {json.dumps(key[1])}, "v": {"null" if text is None else text}}}\n')
        if compact:
            self.compact()
        elif lines:
            self._append("".join(lines).encode())
            if self._journal_bytes > self._limit:
                self.compact()

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.journal_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        view = memoryview(data)
        while view:  # one write for the whole change; a regular file takes it whole
            view = view[os.write(self._fd, view):]
        self._journal_bytes += len(data)
        self.stats.writes += 1
        self.stats.bytes += len(data)

    def document(self) -> str:
        """state.json as compaction writes it: one guest per line, so it stays readable and diffable."""
        groups: dict[str, list[str]] = {kind: [] for kind in KINDS}
        for (kind, ident), text in self.image.items():
            groups[kind].append(text if kind in (CT, VM) else f"{json.dumps(ident)}: {text}")
        cts = ",\n".join(f"  {text}" for text in groups[CT])
        vms = ",\n".join(f"  {text}" for text in groups[VM])
        return (f'{{"format": {FORMAT},\n "cts": [\n{cts}\n ],\n "vms": [\n{vms}\n ],\n'
                f' "volumes": {{{", ".join(groups[VOLUMES])}}},\n'
                f' "pools": {{{", ".join(groups[POOL])}}},\n "nodes": {{{", ".join(groups[NODE])}}}\n}}\n')

    def compact(self) -> None:
        """Write state.json from the image (atomically) and empty the journal."""
        data = self.document().encode()
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(STATE_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.state_file)
        # Killed here, the journal is replayed over the new state.json at the next start: the same state.
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
        elif self.journal_file.exists():
            os.truncate(self.journal_file, 0)
        self._journal_bytes = 0
        self._limit = max(MIN_JOURNAL, 4 * len(data))
        self.stats.writes += 1
        self.stats.bytes += len(data)
        self.stats.compactions += 1

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
