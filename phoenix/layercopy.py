"""Executing a CopyLayer step: a built layer copied to another member of the cluster (the calls, in order).

vzdump of the layer on its member (mode stop for a stopped template, snapshot for a running layer), the archive's path
read from the task's log; unless the backup storage is shared, the archive streamed from that member into a local
spool file and from there to the other member, its sha256 checked; the restore there under the copy's VMID; the
archives removed from both; the snapshot made again; and last the record, so a copy interrupted anywhere is not taken
for a copy: its next run replaces it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import PhoenixError
from .steps import CopyLayer, Forget, SetFacts

if TYPE_CHECKING:
    from .hostview import HostView
    from .pve.client import Pve
    from .transport.node import Node


def copy_layer(step: CopyLayer, pve: Pve, view: HostView, nodes: Callable[[str], Node], spool: Path,
               task_timeout: float | None = None) -> None:
    from .artifacts.vzdump import archive_path

    kind = "lxc" if step.kind == "lxc" else "qemu"
    for gone in step.replace:
        path = f"nodes/{gone.node}/{kind}/{gone.vmid}"   # a copy's linked clones are of its kind
        if gone.protection:
            pve.run("PUT", f"{path}/config", idempotent=True, protection=0)
        if gone.running:
            pve.run("POST", f"{path}/status/stop", idempotent=True)
        pve.run("DELETE", path, purge=1)
        view.apply(Forget(gone.vmid))
    upid = pve.call("POST", f"nodes/{step.source}/vzdump", vmid=step.vmid, storage=step.backup_storage,
                    mode="snapshot" if step.running else "stop", compress="zstd", remove=0)
    pve.wait(upid, task_timeout)
    log = [str(entry.get("t", "")) for entry in pve.get(f"nodes/{step.source}/tasks/{upid}/log", limit=1000)]
    dumped = archive_path(log)
    name = dumped.rsplit("/", 1)[-1]
    there = f"{step.dump_dir.rstrip('/')}/{name}"
    source, target = nodes(step.source), nodes(step.node)
    try:
        if not step.shared_backup and step.source != step.node:
            move(source, dumped, target, there, spool)
        params = {"vmid": step.copy_vmid, **step.restore}
        volume = f"{step.backup_storage}:backup/{name}"
        if kind == "lxc":
            params.update(ostemplate=volume, restore=1)
        else:
            params["archive"] = volume
        pve.run("POST", f"nodes/{step.node}/{kind}", task_timeout=task_timeout, **params)
        view.apply(SetFacts(step.copy_vmid, str(step.restore.get("tags", "")), {"node": step.node, "kind": kind},
                            new=True))
    finally:
        source.remove(dumped)
        if not step.shared_backup and step.source != step.node:
            target.remove(there)
    guest = f"nodes/{step.node}/{kind}/{step.copy_vmid}"
    if step.snapshot:
        pve.run("POST", f"{guest}/snapshot", snapname=step.snapshot,
                description=f"Phoenix copy of layer {step.vmid} from {step.source}")
    pve.run("PUT", f"{guest}/config", idempotent=True, **step.record)
    view.apply(SetFacts(step.copy_vmid, str(step.record.get("tags", "")), {"node": step.node, "kind": kind,
                                                                           "status": "stopped"}))


def move(source: Node, path: str, target: Node, there: str, spool: Path) -> None:
    """Stream a file from one member to another through a local spool file, its sha256 checked on the way back out."""
    spool.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".copy-", dir=spool)
    try:
        sha = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            def sink(block: bytes) -> None:
                sha.update(block)
                out.write(block)

            source.fetch(path, sink)
        check = hashlib.sha256()
        with open(name, "rb") as f:
            class Reading:
                def read(self, n: int = -1) -> bytes:
                    block = f.read(n)
                    check.update(block)
                    return block

            target.send(there, Reading())  # type: ignore[arg-type]
        if check.hexdigest() != sha.hexdigest():
            target.remove(there)
            raise PhoenixError(f"the archive {path} changed while it was copied to the other member: run again")
    finally:
        Path(name).unlink(missing_ok=True)
