"""The artifact store: a directory of layer archives, each named by the layer's identity, with a JSON manifest.

`<identity>.tar.<ext>` is a vzdump archive of the layer; `<identity>.json` its manifest (identity, parent identity,
layer name, kind, Proxmox version, created, sha256 and size of the archive, and the build ids that tie it to its
parent). An archive is written under a temporary name and renamed into place once whole and checked; its manifest is
written after it, the same way: an interrupted export leaves no archive and no manifest under their final names.
A manifest whose archive does not match its size and sha256 is refused (said once), never restored; so is one whose
archive holds another layer or build than it names (the guest config vzdump keeps in the archive carries the layer's
record tags: embedded.py), a foreign or replayed archive.

The directory comes from PHOENIX_ARTIFACTS or the hypervisor config's `artifacts.dir`; none: no store.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import PhoenixError

ENV = "PHOENIX_ARTIFACTS"
MANIFEST_VERSION = 1
CHUNK = 1024 * 1024
IDENTITY = re.compile(r"^[0-9a-f]{8,64}$")
ARCHIVE_NAME = re.compile(r"^[0-9a-f]+\.(tar(\.(gz|zst|lzo|bz2))?|tgz|vma(\.(gz|zst|lzo))?)$")  # vzdump.EXTENSION
PARTIAL = ".partial-"  # in the name of an archive being written: .<name>.partial-<host>-<pid>-<thread>
HOST = socket.gethostname()


def partial_name(name: str) -> str:
    return f".{name}{PARTIAL}{HOST}-{os.getpid()}-{threading.get_ident()}"


def left_by_the_dead(name: str, host: str = HOST) -> bool:
    """A partial file written by a process of this machine that is gone (an export killed with SIGKILL); a store shared
    with other machines keeps theirs (their processes cannot be seen from here)."""
    from ..lease import process_start

    if not name.startswith(".") or PARTIAL not in name:
        return False
    parts = name.rsplit(PARTIAL, 1)[1].rsplit("-", 2)
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    return process_start(int(parts[1])) == -1


@dataclass(frozen=True)
class Manifest:
    """What an archive is: the layer it was made from and how to check it."""

    identity: str                  # the layer's identity (the archive's name)
    parent_identity: str | None
    layer: str                     # the resource key: "ct920"
    kind: str                      # "lxc"
    archive: str                   # file name in the store
    sha256: str
    size: int
    build: str                     # the layer's build id: children's identities hash it
    parent_build: str | None
    proxmox_version: str
    created: int                   # epoch seconds
    vmid: int | None = None
    version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            data = json.loads(text)
            fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            found = cls(**fields)
        except (ValueError, TypeError) as e:
            raise PhoenixError(f"artifact manifest {where} is not a Phoenix manifest: {e}") from None
        if found.version != MANIFEST_VERSION or not IDENTITY.match(found.identity):
            raise PhoenixError(f"artifact manifest {where} is not a Phoenix manifest (version {found.version})")
        if not isinstance(found.archive, str) or not ARCHIVE_NAME.match(found.archive) \
                or not found.archive.startswith(f"{found.identity}."):
            raise PhoenixError(f"artifact manifest {where} names its archive {found.archive!r}: an archive is "
                               f"<identity>.tar.zst (or .tar.gz, .vma.zst, …) beside its manifest, never a path")
        return found


def store_dir(configured: str | None, resolve: Callable[[str], Path]) -> Path | None:
    """The store's directory: PHOENIX_ARTIFACTS, else the config's (resolved against the config dir), else None."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    return resolve(configured) if configured else None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class HashingWriter:
    """A binary file that hashes and counts what is written through it (an archive streamed into the store)."""

    def __init__(self, f: IO[bytes]):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)


class Store:
    """The artifact store in one directory; safe to share between threads."""

    def __init__(self, root: Path, say: Callable[[str], None] = lambda _: None, hashed: Path | None = None):
        """hashed: a file (in .cache/) remembering the sha256 of archives by path, size and mtime, so that a plan
        does not read every archive again; an archive changed since is hashed again."""
        self.root = Path(root)
        self.say = say
        self.hashed = hashed
        self._lock = threading.Lock()
        self._checked: dict[str, Manifest | None] = {}   # identity -> a verified manifest, or None (refused/absent)

    def manifest_path(self, identity: str) -> Path:
        return self.root / f"{identity}.json"

    def archive_path(self, m: Manifest) -> Path:
        return self.root / m.archive

    def manifests(self) -> Iterator[Manifest]:
        """Every manifest in the store (unreadable ones skipped)."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob("*.json")):
            with suppress(PhoenixError, OSError):
                yield Manifest.from_json(path.read_text(), str(path))

    def read(self, identity: str) -> Manifest | None:
        """The manifest of this identity, unchecked, or None."""
        path = self.manifest_path(identity)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise PhoenixError(f"cannot read artifact manifest {path}: {e.strerror}") from None
        return Manifest.from_json(text, str(path))

    def problem(self, m: Manifest) -> str | None:
        """Why the archive of a manifest may not be restored, or None (its size and sha256 are checked)."""
        path = self.archive_path(m)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return f"archive {path} is missing"
        if size != m.size:
            return f"archive {path} has {size} bytes, its manifest says {m.size}"
        found = self._sha256(path)
        if found != m.sha256:
            return f"archive {path} does not match its manifest's sha256 (found {found[:12]}..., expected {m.sha256[:12]}...)"
        return self._members(path, found)

    def _members(self, path: Path, sha: str) -> str | None:
        """Why the archive's members may not be restored (members.py), or None; remembered by the archive's sha256
        (an archive of the same bytes has the same members), so a large archive is read once."""
        from .members import archive_problem

        key = f"members:{sha}"
        known = self._hashes()
        if isinstance(known.get(key), str):
            return known[key] or None
        why = archive_problem(path)
        if why is None or "cannot be read" not in why:  # a missing zstd is not remembered
            known[key] = why or ""
            self._keep_hashes(known)
        return why

    def _hashes(self) -> dict[str, Any]:
        """What the hashed file remembers (nothing without one, or when it cannot be read)."""
        if self.hashed is not None:
            with suppress(OSError, ValueError):
                loaded = json.loads(self.hashed.read_text())
                return loaded if isinstance(loaded, dict) else {}
        return {}

    def _keep_hashes(self, known: dict[str, Any]) -> None:
        """The hashed file replaced whole (a temporary file renamed over it); a failure only costs a later rehash."""
        if self.hashed is None:
            return
        with suppress(OSError):
            self.hashed.parent.mkdir(parents=True, exist_ok=True)
            temp = self.hashed.with_name(f"{self.hashed.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            temp.write_text(json.dumps(known))
            os.replace(temp, self.hashed)

    def _sha256(self, path: Path) -> str:
        """The archive's sha256, from the hashed file while its size and mtime are those remembered."""
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        known = self._hashes()
        entry = known.get(str(path.resolve()))
        if isinstance(entry, list) and entry[:2] == stamp and len(entry) == 3:
            return str(entry[2])
        found = sha256_file(path)
        known[str(path.resolve())] = [*stamp, found]
        self._keep_hashes(known)
        return found

    def forget_hash(self, archive: Path) -> None:
        """An archive found damaged while it was sent: hash it again next time (it is then refused)."""
        if self.hashed is None:
            return
        with suppress(OSError, ValueError):
            known = json.loads(self.hashed.read_text())
            if isinstance(known, dict) and known.pop(str(archive.resolve()), None) is not None:
                self.hashed.write_text(json.dumps(known))

    def find(self, identity: str) -> Manifest | None:
        """The checked manifest of an archive of this identity, or None: a damaged archive is refused and said (once
        per run), and the layer is then baked."""
        with self._lock:
            if identity in self._checked:
                return self._checked[identity]
            try:
                m = self.read(identity)
            except PhoenixError as e:
                self.say(f"phoenix: artifact refused: {e}; the layer is baked instead")
                m = None
            if m is not None and m.identity != identity:
                self.say(f"phoenix: artifact refused: {self.manifest_path(identity)} is for identity {m.identity}; "
                         "the layer is baked instead")
                m = None
            if m is not None:
                why = self.problem(m)
                if why is None:  # whole: then what it holds must be the layer and build its manifest names
                    from .embedded import mismatch

                    why = mismatch(self.archive_path(m), m.identity, m.build)
                if why is not None:
                    self.say(f"phoenix: artifact refused for {m.layer}: {why}; the layer is baked instead")
                    m = None
            self._checked[identity] = m
            return m

    def has(self, identity: str) -> bool:
        """An archive of this identity is in the store (its manifest present; not checked)."""
        return self.manifest_path(identity).exists()

    @contextmanager
    def writing(self, archive: str) -> Iterator[HashingWriter]:
        """A file to stream an archive into, under a temporary name in the store; renamed to `archive` when the block
        ends without error, removed otherwise (an interrupted export leaves nothing under the final name)."""
        if "/" in archive or archive.startswith(".") or not archive:
            raise PhoenixError(f"bad artifact file name {archive!r}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PhoenixError(f"cannot create the artifact store {self.root}: {e.strerror}") from None
        temp = self.root / partial_name(archive)
        try:
            with temp.open("wb") as f:
                writer = HashingWriter(f)
                yield writer
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.root / archive)
        except BaseException:
            with suppress(OSError):
                temp.unlink()
            raise

    def sweep(self) -> list[str]:
        """Remove the partial files that exports killed on this machine left (never read; named so they cannot be taken
        for an archive); the names removed."""
        gone = []
        if self.root.is_dir():
            for path in sorted(self.root.glob(f".*{PARTIAL}*")):
                if left_by_the_dead(path.name) and path.is_file():
                    with suppress(OSError):
                        path.unlink()
                        gone.append(path.name)
        if gone:
            self.say(f"phoenix: removed {len(gone)} partial file(s) that killed exports left in the artifact store")
        return gone

    def commit(self, m: Manifest) -> Path:
        """Write the manifest of an archive already in place (atomically); after this the archive is in the store."""
        path = self.manifest_path(m.identity)
        temp = path.with_name(partial_name(path.name))
        temp.write_text(m.to_json())
        os.replace(temp, path)
        with self._lock:
            self._checked.pop(m.identity, None)
        return path

    def open_archive(self, m: Manifest) -> IO[bytes]:
        return self.archive_path(m).open("rb")

