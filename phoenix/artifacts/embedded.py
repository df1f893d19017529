"""What a layer archive says of itself: the guest config vzdump keeps inside it, and the layer record in its tags.

vzdump writes the guest's config into the archive it makes: a container's as `./etc/vzdump/pct.conf`, the first
member of its tar; a VM's as the `qemu-server.conf` blob of a VMA archive's header (PVE's tar format of a VM backup:
`./qemu-server.conf`). The config's `tags` line carries the record Phoenix set on the guest (`phx-id-<identity>`,
`phx-b-<build id>`), so an archive can be checked against its manifest by what it holds, not only by its sha256: an
archive of another layer or an older build under this identity's name (foreign or replayed, its manifest made to
match) is refused. Only the start of the archive is read: one tar member, or the VMA header; nothing is extracted,
and nothing read is run. zstd and lzo archives are read through the `zstd` and `lzop` commands (argv, no shell).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import struct
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..errors import PhoenixError

CONFIG_MEMBERS = ("etc/vzdump/pct.conf", "qemu-server.conf")  # in a container's tar; in PVE's tar of a VM backup
CONFIG_BLOB = "qemu-server.conf"                                # in a VMA header
MAX_CONFIG = 1024 * 1024           # a guest config is far smaller; a bigger member is not one
MAX_MEMBERS = 16                   # vzdump writes the config first: it is not searched for through the disks
VMA_MAGIC = b"VMA\0"
VMA_HEADER = struct.Struct(">4sI16sq16sIII")  # magic, version, uuid, ctime, md5, blob buffer offset and size, size
VMA_CONFIGS = 256
VMA_NAMES_AT = VMA_HEADER.size + 1984  # config_names[256], then config_data[256] (big-endian offsets into the blobs)
MAX_VMA_HEADER = 16 * 1024 * 1024
TOOLS = {"zst": ("zstd", "-dcq", "--"), "lzo": ("lzop", "-dcq", "--")}


@contextmanager
def decompressed(path: Path) -> Iterator[IO[bytes]]:
    """The archive's bytes, decompressed as its name says (.gz, .bz2, .xz in-process; .zst, .lzo by their tools)."""
    suffix = path.name.rsplit(".", 1)[-1]
    if suffix in TOOLS:
        tool = TOOLS[suffix]
        if shutil.which(tool[0]) is None:
            raise PhoenixError(f"cannot read {path.name} to check what layer it holds: `{tool[0]}` is not installed "
                               f"(apt-get install {'zstd' if suffix == 'zst' else 'lzop'})")
        proc = subprocess.Popen([*tool, str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        try:
            yield proc.stdout
        finally:
            proc.kill()
            proc.stdout.close()
            proc.wait()
        return
    openers: dict[str, Callable[[Path], Any]] = {"gz": gzip.open, "tgz": gzip.open, "bz2": bz2.open,
                                                      "xz": lzma.open}
    with openers.get(suffix, lambda p: p.open("rb"))(path) as f:
        yield f


def guest_config(path: Path) -> str:
    """The guest config vzdump kept in the archive at path; PhoenixError when it holds none Phoenix can find."""
    try:
        with decompressed(path) as stream:
            if ".vma" in path.name:
                return _vma_config(stream, path)
            return _tar_config(stream, path)
    except (OSError, EOFError, tarfile.TarError, lzma.LZMAError, ValueError, struct.error) as e:
        raise PhoenixError(f"archive {path.name} cannot be read as a vzdump archive: {e}") from None


def _tar_config(stream: IO[bytes], path: Path) -> str:
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for i, member in enumerate(tar):
            if i >= MAX_MEMBERS:
                break
            if member.name.removeprefix("./") in CONFIG_MEMBERS and member.isfile() and member.size <= MAX_CONFIG:
                found = tar.extractfile(member)
                if found is not None:
                    return found.read().decode("utf-8", "replace")
    raise PhoenixError(f"archive {path.name} holds no guest config where vzdump puts it "
                       f"({' or '.join('./' + m for m in CONFIG_MEMBERS)})")


def _vma_config(stream: IO[bytes], path: Path) -> str:
    head = stream.read(VMA_HEADER.size)
    magic, _version, _uuid, _ctime, _md5, blob_at, blob_size, size = VMA_HEADER.unpack(head)
    if magic != VMA_MAGIC or not (blob_at + blob_size <= size <= MAX_VMA_HEADER) or blob_at < VMA_NAMES_AT:
        raise PhoenixError(f"archive {path.name} is not a VMA archive (no VMA header)")
    header = head + stream.read(size - len(head))
    if len(header) != size:
        raise PhoenixError(f"archive {path.name} is cut off inside its VMA header")
    names = struct.unpack_from(f">{VMA_CONFIGS}I", header, VMA_NAMES_AT)
    data = struct.unpack_from(f">{VMA_CONFIGS}I", header, VMA_NAMES_AT + 4 * VMA_CONFIGS)
    blobs = header[blob_at:blob_at + blob_size]

    def blob(offset: int) -> bytes:
        (length,) = struct.unpack_from("<H", blobs, offset)
        return blobs[offset + 2:offset + 2 + length]

    for name, value in zip(names, data, strict=True):
        if name and blob(name).rstrip(b"\0").decode("utf-8", "replace") == CONFIG_BLOB:
            return blob(value).rstrip(b"\0").decode("utf-8", "replace")
    raise PhoenixError(f"archive {path.name} holds no {CONFIG_BLOB} in its VMA header")


def recorded(config: str) -> tuple[str | None, str | None]:
    """The layer identity and build id the config's tags carry (phx-id-, phx-b-), or None for each it lacks."""
    from ..facts.guests import GuestFacts, split_tags

    for line in config.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "tags" and not line.startswith("#"):
            facts = GuestFacts(0, tags=split_tags(value.strip()))
            return facts.identity, facts.build_id
    return None, None


def mismatch(path: Path, identity: str, build: str) -> str | None:
    """Why the archive at path does not hold the layer its manifest names (identity, build), or None if it does."""
    try:
        found_identity, found_build = recorded(guest_config(path))
    except PhoenixError as e:
        return str(e)
    if found_identity is None:
        return f"archive {path.name} holds a guest with no Phoenix layer record in its tags"
    if (found_identity, found_build) != (identity, build):
        return (f"archive {path.name} holds layer identity {found_identity} (build {found_build}), but its manifest "
                f"says {identity} (build {build}): a foreign or replayed archive")
    return None
