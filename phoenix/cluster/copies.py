"""How a clone reaches a node other than its parent's (pure), and the per-node copies of a layer that make it possible.

Proxmox clones to another node (`target`) only a guest whose volumes are all on shared storage, onto shared storage
(pve-container and qemu-server `clone_vm`: "can't clone CT to node 'X' (CT uses local storage)", "can't clone to
non-shared storage 'X'"). So a child on another node is cloned with `target` when its parent's disk and its own are
on shared storage; otherwise the parent layer is copied to the child's node first (vzdump there, restore here, under
the copy's own VMID and the layer's identity), and the child is cloned from the copy on its own node. The copy of
layer N on the member with node id K is guest K * 100000 + N.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

COPY_STRIDE = 100000     # the copy of layer N on the member with node id K is guest K * COPY_STRIDE + N
COPY_TAG = "phx-copy-"   # phx-copy-<vmid of the layer>: the guest is a per-node copy of that layer


class Route(StrEnum):
    LOCAL = "local"      # the parent is on the child's node
    TARGET = "target"    # cloned across with `target`: both disks on shared storage
    COPY = "copy"        # the parent's copy on the child's node


def route(parent_node: str, child_node: str, parent_disk_shared: bool, child_disk_shared: bool,
          linked: bool = False) -> Route:
    """How a child on child_node is cloned from a parent on parent_node. linked: the child is a linked clone of its
    parent (a VM of a template): made on the template's member only, so from a copy there even on shared storage."""
    if parent_node == child_node:
        return Route.LOCAL
    if parent_disk_shared and child_disk_shared and not linked:
        return Route.TARGET
    return Route.COPY


def copy_vmid(nodeid: int, vmid: int) -> int:
    """The VMID of the copy of layer `vmid` on the member with corosync node id `nodeid`."""
    if not 0 < vmid < COPY_STRIDE:
        raise ValueError(f"a layer copied to another node needs a VMID below {COPY_STRIDE} (it has {vmid})")
    return nodeid * COPY_STRIDE + vmid


@dataclass(frozen=True)
class Source:
    """What a clone is cloned from: the parent layer on its member, or its copy on the clone's member (copy); `target`:
    the clone's member, when Proxmox clones across (both disks on shared storage)."""

    node: str
    vmid: int
    target: str | None = None
    copy: bool = False


def source(parent_node: str | None, parent_vmid: int, here: str, parent_disk_shared: bool, own_disk_shared: bool,
           copy_vmid: int | None, linked: bool = False) -> Source | None:
    """The source of a clone on `here` (None: the parent, on this node). copy_vmid: the parent's copy on `here`
    (needed for the COPY route)."""
    if parent_node is None or parent_node == here:
        return None
    how = route(parent_node, here, parent_disk_shared, own_disk_shared, linked)
    if how == Route.TARGET:
        return Source(parent_node, parent_vmid, target=here)
    assert copy_vmid is not None
    return Source(here, copy_vmid, copy=True)
