"""What a layer archive holds, checked before it is restored: the node extracts it into the guest's root (pct restore,
qmrestore), so no member may land outside it. Refused: an absolute name, `..` in a name, a control character in a
name, a hard link to a name outside the archive's root, a symbolic link whose relative target climbs above the root,
and a device file (block or character). An absolute symbolic link is the guest's own path (a root file system is full
of them: /etc/localtime, /bin -> usr/bin) and is seen from inside the guest, so it stays in.

Phoenix itself never extracts an archive: these are the rules of tarfile's `data` filter (PEP 706) as they apply to a
guest's root, said as refusals (an absolute name is refused, not stripped). A VMA archive (a VM's vzdump on a real
node) holds disk images and config blobs, no paths, and is not a tar: it has no members to check. zstd archives are
read through the `zstd` command (Python's tarfile reads gzip, bzip2 and xz only)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def climbs(base: str, target: str) -> bool:
    """Whether target, a relative path from directory base (both inside the root), leads above the root."""
    depth = 0
    for part in [*base.split("/"), *target.split("/")]:
        if part in ("", "."):
            continue
        depth += -1 if part == ".." else 1
        if depth < 0:
            return True
    return False


def _control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def member_problem(m: tarfile.TarInfo) -> str | None:
    """Why a member may not be restored into a guest's root, or None."""
    name = m.name
    if _control(name):
        return f"member {name!r} has a control character in its name"
    if name.startswith("/"):
        return f"member {name!r} has an absolute name: it would be written outside the guest's root"
    if ".." in name.split("/"):
        return f"member {name!r} has '..' in its name: it would be written outside the guest's root"
    if m.ischr() or m.isblk():
        return f"member {name!r} is a device file: a layer archive holds none (the node makes a guest's devices)"
    if m.islnk() and (m.linkname.startswith("/") or ".." in m.linkname.split("/") or _control(m.linkname)):
        return f"member {name!r} is a hard link to {m.linkname!r}, outside the archive's root"
    if m.issym():
        if _control(m.linkname):
            return f"member {name!r} is a symbolic link with a control character in its target"
        if not m.linkname.startswith("/") and climbs(name.rsplit("/", 1)[0] if "/" in name else "", m.linkname):
            return f"member {name!r} is a symbolic link to {m.linkname!r}, which leads out of the guest's root"
    return None


def is_tar(path: Path) -> bool:
    return ".tar" in path.name or path.name.endswith(".tgz")


@contextmanager
def _opened(path: Path) -> Iterator[tarfile.TarFile]:
    """The archive as a tar stream (zstd through the zstd command); OSError or tarfile.TarError when it is none."""
    if not path.name.endswith(".zst"):
        with tarfile.open(path, mode="r:*") as tar:
            yield tar
        return
    zstd = shutil.which("zstd")
    if zstd is None:
        raise OSError(f"cannot read {path.name} to check its members: the zstd command is not installed "
                      "(apt-get install zstd)")
    proc = subprocess.Popen([zstd, "-dcq", "--", str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    stream: IO[bytes] = proc.stdout
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            yield tar
    finally:
        stream.close()
        proc.kill()
        proc.wait()


def archive_problem(path: Path) -> str | None:
    """The first member of a tar archive that may not be restored (named), or why it cannot be read; None if every
    member may be (or it is not a tar: a VMA)."""
    if not is_tar(path):
        return None
    try:
        with _opened(path) as tar:
            for m in tar:
                why = member_problem(m)
                if why is not None:
                    return f"archive {path} holds {why}"
    except tarfile.TarError:
        return f"archive {path} cannot be read as a tar archive (damaged, or not what its name says)"
    except (OSError, EOFError) as e:
        return f"archive {path} cannot be read as a tar archive: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None
