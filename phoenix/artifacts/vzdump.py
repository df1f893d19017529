"""What a vzdump task says (pure): where it wrote the archive, and the archive's extension."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..errors import PhoenixError

ARCHIVE_LINE = re.compile(r"creating (?:vzdump )?archive '([^']+)'")
EXTENSION = re.compile(r"\.(tar(?:\.(?:gz|zst|lzo|bz2))?|tgz|vma(?:\.(?:gz|zst|lzo))?)$")


def archive_path(log: Iterable[str]) -> str:
    """The archive's path on the node, from a vzdump task's log."""
    for line in log:
        found = ARCHIVE_LINE.search(line)
        if found:
            return found.group(1)
    raise PhoenixError("the vzdump task's log does not say where it wrote the archive ('creating vzdump archive ...')")


def extension(path: str) -> str:
    found = EXTENSION.search(path)
    if not found:
        raise PhoenixError(f"vzdump wrote {path}, which is not an archive name Phoenix knows (.tar.zst, .tar.gz, ...)")
    return found.group(1)
