"""The simulated node: records what would run, runs nothing.

Each operation becomes one JSON line in the record file (what, where, the script's sha256, the context
keys, the *names* of the secrets). Secret values are never written anywhere. The simulated node has
two GPUs (facts()) and every host path: missing_paths() is always [] (relative paths are still refused). A host
directory is owned by an unprivileged container's root (100000) and empty, unless it was made under the node's file
system (node-fs): then its real owner and content count (dir_owners), and give_dirs chowns it there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import PhoenixError
from ..facts.node import NodeFacts
from .base import ExecResult, Output, ScriptRun
from .node import DirOwner, require_absolute

NODE_FS = "node-fs"  # the simulated node's files, under the simulator's state dir (node-fs-<name>: another member's)


def node_fs(first: Path, node: str, first_node: str) -> Path:
    """The file system of a simulated member: `first` (.cache/sim/node-fs) for the cluster's first node, a sibling
    node-fs-<name> for each other member."""
    return first if node == first_node else first.with_name(f"{first.name}-{node}")
SIMULATED_LXC_PVE = "6.0.5-3"
SIMULATED_MAPPED_ROOT = 100000  # the owner of the simulated node's host directories: an unprivileged container's root
SIMULATED_DEVICES = ("/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise PhoenixError(f"cannot read script {path}: {e.strerror}") from None


class Recorder:
    """Appends one JSON line per operation to a file; safe to share between threads."""

    _locks: dict[Path, threading.Lock] = {}
    _locks_lock = threading.Lock()

    def __init__(self, path: Path, node: str = ""):
        self.path = Path(path)
        self.node = node
        with Recorder._locks_lock:  # the members of a simulated cluster record into one file: one lock for it
            self.lock = Recorder._locks.setdefault(self.path.resolve(), threading.Lock())

    def __call__(self, entry: dict[str, Any]) -> None:
        line = json.dumps({"time": round(time.time(), 3), **({"node": self.node} if self.node else {}), **entry},
                          sort_keys=True) + "\n"
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)


class SimulatedPct:
    """Container operations of the simulated node: recorded, not run."""

    def __init__(self, record: Recorder):
        self._record = record

    def run_script(self, run: ScriptRun, output: Output) -> ExecResult:
        script_sha = _sha256(run.script)
        self._record({
            "op": "run_script",
            "ctid": run.ctid,
            "layer": run.layer,
            "name": run.name,
            "guest_path": run.guest_path,
            "script_sha256": script_sha,
            "lib_sha256": _sha256(run.lib),
            "context_keys": sorted(run.context),
            "secrets": sorted(run.secrets),        # names only
            "files": {name: _sha256(path) for name, path in run.files},
            "timeout_s": run.timeout_s,
        })
        line = f"[{run.layer} {run.name}] simulated: would run {run.name} (sha256 {script_sha[:12]})"
        output(line)
        if run.log_path is not None:
            with self._record.lock:
                run.log_path.parent.mkdir(parents=True, exist_ok=True)
                with run.log_path.open("a", encoding="utf-8") as f:
                    f.write(line + "\n")
        return ExecResult(exit_status=0, seconds=0.0, tail=())

    def set(self, vmid: int, options: dict[str, str]) -> None:
        self._record({"op": "pct_set", "ctid": int(vmid), "options": {k: str(v) for k, v in options.items()}})

    def remove_secrets(self, vmid: int) -> None:
        self._record({"op": "remove_secrets", "ctid": int(vmid)})


class SimulatedNode:
    """A Node for the simulated host; safe to share between threads."""

    simulated = True

    def __init__(self, record_path: Path, node_root: Path | None = None, name: str = ""):
        """node_root: the simulated node's file system (archives copied to and from it), by default next to the record
        file (the simulator's own: .cache/sim/node-fs). name: the member, in each record (none: the only node)."""
        self.record_path = Path(record_path)
        self.node_root = Path(node_root) if node_root is not None else self.record_path.parent / NODE_FS
        self.name = name
        self._record = Recorder(self.record_path, name)
        self.pct = SimulatedPct(self._record)

    def facts(self) -> NodeFacts:
        return NodeFacts(nvidia_driver_version=None, nvidia_devices=SIMULATED_DEVICES, lxc_pve_version=SIMULATED_LXC_PVE)

    def missing_paths(self, paths: Sequence[str]) -> list[str]:
        """Always []: the simulated node has every host path."""
        require_absolute(paths)
        return []

    def run_on_node(self, run: ScriptRun, output: Output) -> ExecResult:
        """Recorded, not run: the simulated node has what a host script would install."""
        self._record({"op": "run_on_node", "layer": run.layer, "name": run.name, "context_keys": sorted(run.context),
                      "script_sha256": _sha256(run.script)})
        output(f"[{run.layer} {run.name}] simulated: would run {run.name} on the node")
        return ExecResult(exit_status=0, seconds=0.0, tail=())

    def make_dirs(self, paths: Sequence[str], owner: int | None = None) -> None:
        """Recorded: the simulated node has every host path already."""
        require_absolute(paths)
        self._record({"op": "make_dirs", "paths": list(paths), "owner": owner})

    def dir_owners(self, paths: Sequence[str]) -> dict[str, DirOwner]:
        """A host directory made under the node's file system (node-fs) has its real owner and content there; every
        other host path is an empty directory of an unprivileged container's mapped root (100000)."""
        require_absolute(paths)
        out = {}
        for path in dict.fromkeys(paths):
            local = self.local(path)
            if local.is_dir():
                st = local.stat()
                out[path] = DirOwner(path, st.st_uid, st.st_gid, not any(local.iterdir()))
            else:
                out[path] = DirOwner(path, SIMULATED_MAPPED_ROOT, SIMULATED_MAPPED_ROOT, True)
        return out

    def give_dirs(self, paths: Sequence[str], owner: int) -> None:
        """Recorded; a directory under node-fs is given to owner there (when this process may chown)."""
        require_absolute(paths)
        for path in paths:
            local = self.local(path)
            if local.is_dir():
                if any(local.iterdir()):
                    raise PhoenixError(f"giving host directories {path} to {owner}:{owner} on the simulated node failed: "
                                       f"{path} is not empty any more: left as it is")
                with contextlib.suppress(PermissionError):   # not root: recorded only
                    os.chown(local, owner, owner)
        self._record({"op": "give_dirs", "paths": list(paths), "owner": owner})

    def snippets_dir(self, storage: str) -> Path:
        """Where the simulated node keeps a storage's snippets (the simulator reads them when a VM starts)."""
        return self.record_path.parent / "storage" / storage / "snippets"

    def put_snippets(self, storage: str, directory: str, files: dict[str, bytes], prefix: str = "",
                     keep_vmids: Sequence[int] = ()) -> None:
        """Into the simulated storage, as on a node: a temporary name, then renamed; older ones removed."""
        require_absolute([directory])
        if self.full(storage):
            raise PhoenixError(f"writing snippets into {directory} (storage {storage}) on the simulated node failed: "
                               f"cannot write {sorted(files)[0] if files else directory}: No space left on device")
        where = self.snippets_dir(storage)
        where.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            tmp = where / f".{name}.phx-tmp"
            tmp.write_bytes(data)
            tmp.chmod(0o600)
            tmp.replace(where / name)
        if prefix:
            for old in where.glob(f"{prefix}*"):
                if old.name not in files:
                    old.unlink()
        if keep_vmids:
            keep = {str(v) for v in keep_vmids}
            for old in where.glob("phoenix-*-*.yml"):
                vmid = old.name.removeprefix("phoenix-").split("-", 1)[0]
                if vmid.isdigit() and vmid not in keep:
                    old.unlink()
        self._record({"op": "put_snippets", "storage": storage, "directory": directory, "files": sorted(files)})

    def check(self) -> None:
        """Nothing to reach."""

    def check_writable(self, directory: str) -> None:
        """Any directory is writable on the simulated node (a full storage shows only when data is written), unless
        its sshd offers no SFTP (the fault "no_sftp")."""
        require_absolute([directory])
        if self._faults().get("no_sftp"):
            raise PhoenixError("cannot start SFTP on the simulated node: Channel closed. The node's sshd must offer the "
                               "sftp subsystem (`Subsystem sftp ...` in /etc/ssh/sshd_config; Debian package "
                               "openssh-sftp-server).")

    def _faults(self) -> dict[str, Any]:
        """The simulated node's faults (faults.json in the simulator's state dir): {"full_storages": ["local"]} (writing
        file data into a storage fails as on a node with no space left), {"no_sftp": true}."""
        try:
            found = json.loads((self.record_path.parent / "faults.json").read_text())
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def full(self, storage: str) -> bool:
        return storage in (self._faults().get("full_storages") or ())

    def local(self, path: str) -> Path:
        """Where an absolute node path lies in the simulated node's file system."""
        require_absolute([path])
        parts = [p for p in path.split("/") if p]
        if ".." in parts:
            raise PhoenixError(f"node path {path!r} has '..' in it")
        return self.node_root.joinpath(*parts)

    def fetch(self, path: str, sink: Callable[[bytes], object]) -> int:
        total = 0
        try:
            with self.local(path).open("rb") as f:
                for block in iter(lambda: f.read(1024 * 1024), b""):
                    sink(block)
                    total += len(block)
        except OSError as e:
            raise PhoenixError(f"cannot read {path} on the simulated node: {e.strerror}") from None
        self._record({"op": "fetch", "path": path, "bytes": total})
        return total

    def send(self, path: str, source: BinaryIO, mode: int = 0o644) -> None:
        target = self.local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
        try:
            with temp.open("wb") as f:
                for block in iter(lambda: source.read(1024 * 1024), b""):
                    f.write(block)
            temp.chmod(mode)
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._record({"op": "send", "path": path, "bytes": target.stat().st_size})

    def remove(self, path: str) -> None:
        self.local(path).unlink(missing_ok=True)
        self._record({"op": "remove", "path": path})

    def close(self) -> None:
        pass
