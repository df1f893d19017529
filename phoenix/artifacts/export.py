"""`doit export ct920`: a layer (and each ancestor not in the store yet) into the artifact store, keyed by identity.

For each layer, root first: it must be built as configured (up to date); vzdump through the API to the node's backup
storage (`POST /nodes/{node}/vzdump`, waited for), the archive's path read from the task's log as PVE writes it, then
the archive streamed from the node over the node transport (SFTP on SSH) into the store under a temporary name,
renamed once whole, its manifest written last; the dump is then removed from the node. A template layer stopped and
snapshotted as built is exported as it is (mode stop: nothing to stop).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from ..errors import PhoenixError
from ..plan import Action
from ..resources import chain
from .store import Manifest, Store
from .vzdump import archive_path, extension

if TYPE_CHECKING:
    from ..runtime import Run

EXPORTABLE = ("lxc", "vm")


@dataclass(frozen=True)
class Exported:
    key: str
    manifest: Manifest
    new: bool            # False: the store had it already
    seconds: float = 0.0


def store_of(run: Run) -> Store:
    """The run's artifact store; PhoenixError when none is configured."""
    if run.artifacts is None:
        raise PhoenixError(f"no artifact store: set PHOENIX_ARTIFACTS=<directory> or artifacts.dir in "
                           f"{run.estate.hypervisor_file}")
    return run.artifacts


def export(run: Run, keys: Iterable[str]) -> list[Exported]:
    """Export these layers and their ancestors (those not in the store yet), root first, holding the host's lease."""
    store = store_of(run)
    order: list[str] = []
    for key in keys:
        order += [k for k in chain(run.resources, key) if k not in order]
    for key in order:
        res = run.resources[key]
        if res.kind not in EXPORTABLE:
            raise PhoenixError(f"{key}: only container and VM layers can be exported (kind {res.kind})")
        decision = run.explain(run.decide(key))
        if decision.action != Action.OK:
            raise PhoenixError(f"{key} is not built as configured ({decision.text}): run `doit {key}` first, then export")
    out: list[Exported] = []
    with run.holding():
        store.sweep()
        version = ""
        for key in order:
            facts = run.facts_of(run.resources[key])
            assert facts is not None and facts.identity and facts.build_id
            existing = store.read(facts.identity)
            if existing is not None:
                out.append(Exported(key, existing, False))
                continue
            if not version:
                version = str((run.pve.get("version") or {}).get("version", ""))
            out.append(export_one(run, store, key, version))
    return out


def locked_by(run: Run, node: str, key: str, vmid: int, kind: str) -> None:
    """Refuse to dump a locked guest (vzdump would fail): why it is locked, and the fix (a lock a killed run or a
    crashed node left, as an interrupted vzdump leaves `backup`, is named with the unlock that removes it)."""
    lock = run.pve.get(f"nodes/{node}/{kind}/{vmid}/config").get("lock")
    if not lock:
        return
    from ..kinds.lxc import explain_lock
    from ..kinds.vm import vm_lock

    ctx = cast(Any, SimpleNamespace(pve=lambda: run.pve, node=node, simulated=run.simulated))
    said = vm_lock(ctx, vmid, str(lock)) if kind == "qemu" else explain_lock(ctx, vmid, str(lock))
    raise PhoenixError(f"{key} cannot be exported: {said}")


def export_one(run: Run, store: Store, key: str, version: str) -> Exported:
    t0 = time.monotonic()
    res = run.resources[key]
    facts = run.facts_of(res)
    parent = run.facts_of(run.resources[res.parent]) if res.parent is not None else None
    assert facts is not None and facts.identity and facts.build_id and res.vmid is not None
    node, cfg = facts.node or run.api.node, run.hypervisor.artifacts   # dumped on the member it is on
    transport = run.transport if node == run.api.node else run.node_ops(node)
    mode = "snapshot" if facts.status == "running" else "stop"
    locked_by(run, node, key, res.vmid, "qemu" if res.kind == "vm" else "lxc")
    upid = run.pve.call("POST", f"nodes/{node}/vzdump", vmid=res.vmid, storage=cfg.backup_storage, mode=mode,
                        compress="zstd", remove=0)
    run.pve.wait(upid, run.hypervisor.proxmox.task_timeout_s)
    log = [str(entry.get("t", "")) for entry in run.pve.get(f"nodes/{node}/tasks/{upid}/log", limit=1000)]
    path = archive_path(log)
    name = f"{facts.identity}.{extension(path)}"
    try:
        with store.writing(name) as w:
            transport.fetch(path, w.write)
        manifest = Manifest(facts.identity, parent.identity if parent is not None else None, key, res.kind, name,
                            w.sha.hexdigest(), w.size, facts.build_id, parent.build_id if parent is not None else None,
                            version, int(time.time()), res.vmid)
        store.commit(manifest)
    finally:
        transport.remove(path)  # the dump is in the store now (or failed): the node's storage keeps none
    return Exported(key, manifest, True, time.monotonic() - t0)
