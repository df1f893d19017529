"""What a guest kind reads of the cluster before a write: where a clone comes from when its parent is on another
member, and the copies a layer makes for the children on other members (their VMIDs, what they replace)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cluster.copies import COPY_TAG, Source, source
from ..errors import PhoenixError
from ..steps import Gone

if TYPE_CHECKING:
    from ..resources import Resource
    from ..steps import CopyLayer
    from .base import Context


@dataclass(frozen=True)
class CopyPlan:
    """One copy a layer's build makes: on which member, under which VMID, replacing what."""

    node: str
    copy_vmid: int
    replace: tuple[Gone, ...] = ()
    shared_backup: bool = False


def clone_source(ctx: Context, res: Resource, parent_vmid: int, parent_disk: str, own_disk: str,
                 linked: bool = False) -> Source | None:
    """Where the clone `res` (built on ctx.node) is cloned from: None for its parent on this member; across with
    `target` when both disks are shared (and it is not a linked clone); else the parent's copy on this member (its
    parent's build makes it)."""
    assert res.parent is not None
    placed = ctx.placed(res.parent)
    facts = ctx.view.get(parent_vmid)
    parent_node = placed.node if placed is not None and placed.node else facts.node if facts is not None else None
    cluster = ctx.view.cluster()
    p_shared, own_shared = cluster.shared(parent_disk), cluster.shared(own_disk)
    if parent_node is None or parent_node == ctx.node:
        return None
    copy_vmid = None if p_shared and own_shared and not linked else copy_of(ctx, ctx.node, parent_vmid)
    return source(parent_node, parent_vmid, ctx.node, p_shared, own_shared, copy_vmid, linked)


def copy_of(ctx: Context, node: str, vmid: int) -> int:
    if ctx.copy_vmid is None:
        raise PhoenixError(f"layer {vmid} would need a copy on {node}, which this run cannot make")
    return ctx.copy_vmid(node, vmid)


def copy_plans(ctx: Context, res: Resource, nodes: tuple[str, ...], disk: str, linked_children: bool,
               destroyed: Collection[int] = ()) -> tuple[list[CopyPlan], list[str]]:
    """The copies a build of this layer makes on these members (the decision's), with what each replaces (its old
    copy, and that copy's linked clones when the children are linked clones, but for those the build destroys
    already), and what stops them."""
    assert res.vmid is not None
    if not nodes:
        return [], []
    cluster, hyp = ctx.view.cluster(), ctx.estate.hypervisor
    backup = hyp.artifacts.backup_storage
    problems: list[str] = []
    plans = []
    for node in nodes:
        try:
            vmid = copy_of(ctx, node, res.vmid)
        except PhoenixError as e:
            problems.append(str(e))
            continue
        member = cluster.nodes.get(node)
        if member is not None and not member.has_storage(disk):
            problems.append(f"{res.key} is copied to {node} for the guests built from it there, but {node} has no "
                            f"storage {disk}")
        for where in dict.fromkeys((ctx.node, node)):
            have = cluster.nodes.get(where)
            if have is not None and not have.has_storage(backup, "backup"):
                problems.append(f"{res.key} is copied to {node} through a backup on {where}'s storage {backup}, which "
                                f"does not take 'backup' content: add it (pvesm set {backup} --content ...,backup), or "
                                "set artifacts.backup_storage")
        gone: list[Gone] = []
        found = ctx.view.get(vmid)
        if found is not None:
            if not (found.managed and found.copy_of == str(res.vmid)):
                problems.append(f"VMID {vmid}, where {res.key}'s copy on {node} goes, is taken by a guest that is not "
                                f"a Phoenix copy of it ({COPY_TAG}{res.vmid}): move that guest, or give {node} another "
                                "proxmox.nodes[].nodeid")
                continue
            if linked_children:  # its linked clones hold its base volume: they go first (they follow the new build)
                for child in ctx.view.guests().values():
                    if child.node == node and child.managed and child.copy_of is None and \
                            child.vmid not in destroyed and _cloned_from(ctx, child.vmid, res):
                        gone.append(Gone(child.vmid, node, child.status == "running"))
            gone.append(Gone(vmid, found.node or node, found.status == "running"))
        plans.append(CopyPlan(node, vmid, tuple(gone), cluster.shared(backup)))
    return plans, problems


def _cloned_from(ctx: Context, vmid: int, res: Resource) -> bool:
    """The guest is one of the layer's children in the config."""
    if vmid in ctx.estate.guests:
        return ctx.estate.guests[vmid].clone_from_ctid == res.vmid
    from ..config.vm import parent_of

    return vmid in ctx.estate.vms and parent_of(ctx.estate.vms, vmid) == res.vmid


def copy_steps(res: Resource, kind: str, what: str, node: str, plans: list[CopyPlan], *, user_tags: list[str],
               description: str, record: dict[str, Any], identity: str, build_id: str, owner: str | None,
               restore: dict[str, Any], snapshot: str | None, running: bool, artifacts: Any) -> list[CopyLayer]:
    """The layer's copies, one CopyLayer per plan: restored under the copy's VMID while tagged as building, then
    given the layer's record (identity, build) and a phx-copy-<vmid> tag, so the copy's children compute their
    identities from the layer's build. kind: "lxc" or "qemu"; what: how a copy is named ("CT", "template", "VM");
    restore: the restore's own parameters (storage, name, ...); artifacts: the config's artifacts section."""
    from ..facts import guests as F
    from ..steps import CopyLayer

    assert res.vmid is not None
    mark = f"{COPY_TAG}{res.vmid}"
    rec = {**record, "copy_of": res.key, "copied_from": node}
    tags = F.record_tags([*user_tags, mark], identity, build_id, res.settings_hash)
    return [CopyLayer(f"copy to {plan.node} as {what} {plan.copy_vmid} (its children there clone it)", kind, res.vmid,
                      node, plan.node, plan.copy_vmid, artifacts.backup_storage, artifacts.node_dump_dir.rstrip("/"),
                      plan.shared_backup,
                      {**restore, "unique": 1, "tags": F.building_tags([*user_tags, mark], owner),
                       "description": F.description(description, {"layer": res.key, "state": "building"})},
                      {"tags": tags, "description": F.description(description, rec)},
                      snapshot, plan.replace, running)
            for plan in plans]
