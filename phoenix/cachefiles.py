"""Files under .cache/: written whole or not at all, and damaged ones reported once and rebuilt.

Nothing in .cache/ is trusted with code: every file is plain data (JSON, sqlite3), checked as it is read.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def write_whole(path: Path, data: bytes) -> None:
    """Write a file whole or not at all: a temporary file (one per process and thread), then a rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


SQLITE_MAGIC = b"SQLite format 3\x00"


def sqlite_damage(path: Path) -> str | None:
    """Why an sqlite3 file is damaged (a wrong header, a size its header disagrees with), or None. Reads 100 bytes."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot read it: {e.strerror}"
    if size == 0:
        return None  # sqlite3 makes an empty file a new database
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        return "not an sqlite3 database"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    if page < 512 or size % page:
        return f"truncated ({size} bytes, not a whole number of {page}-byte pages)"
    if pages and size < pages * page:
        return f"truncated ({size} bytes; its header says {pages * page})"
    return None


def set_aside(path: Path) -> Path:
    """Move a damaged file or directory out of the way (kept for a look), and return where it went."""
    target = path.with_name(f"{path.name}.damaged")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged{n}")
    os.replace(path, target)
    return target


def repair(cache: Path, say: Callable[[str], None]) -> None:
    """Before doit opens its database: a damaged doit.db, or a .cache/logs that is not a directory, is set aside and
    said once; doit and Phoenix then start them anew (the host is the truth, nothing is lost)."""
    db = cache / "doit.db"
    why = sqlite_damage(db)
    if why:
        moved = set_aside(db)
        say(f"phoenix: {db} was damaged ({why}); moved it to {moved.name} and started a new one: nothing is lost, "
            "what is built is read from the host")
    logs = cache / "logs"
    if logs.exists() and not logs.is_dir():
        moved = set_aside(logs)
        say(f"phoenix: {logs} was not a directory; moved it to {moved.name} (per-layer logs go to a new {logs.name}/)")
