"""What only the LXC kind can tell the planner: whose guest a CTID holds, and changes the identity does not see (pure)."""

from __future__ import annotations

from typing import Any

from ...facts.guests import GuestFacts
from ...plan import Action, Why
from ...resources import Resource, digest
from ..ha import state_change
from ..running import REASON as STOPPED_REASON
from ..running import stopped_by_hand

ID_MAP_BASE = 100000   # Proxmox's default id map of an unprivileged container: guest id N is host id 100000 + N,
ID_MAP_SIZE = 65536    # so its root is 100000 on the host

MIB, GIB = 1024 ** 2, 1024 ** 3


def recorded(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings as the record keeps them: the description by its digest, so the record's size never
    depends on the user's text (Proxmox allows 8192 characters in all). Idempotent."""
    text = str(settings.get("description", ""))
    return {**settings, "description": text if text.startswith("sha256:") else f"sha256:{digest(text)}"}


def foreign(res: Resource, facts: GuestFacts) -> tuple[Why, str] | None:
    c = res.vmid
    if not facts.managed:
        if facts.tagged:
            return Why.FOREIGN, (f"CT {c} is tagged 'phoenix' but carries no Phoenix record (no phx-id-… or "
                                 "phx-building tag): Phoenix did not build it and will not replace it; move it to another "
                                 "CTID or remove it yourself")
        return Why.FOREIGN, (f"CT {c} exists but is not managed by Phoenix (it has no 'phoenix' tag); Phoenix will not "
                             "replace it: move it to another CTID or remove it yourself")
    if facts.kind != "lxc":
        return Why.WRONG_KIND, f"VMID {c} is a VM, not a container"
    return None


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def settings_changes(res: Resource, facts: GuestFacts, old: dict[str, Any] | None) -> list[str]:
    """Readable differences of the in-place settings: from the record if known, else from the listing."""
    out = []
    want = res.settings
    if facts.maxmem and facts.maxmem != want["memory"] * MIB:
        out.append(f"memory {facts.maxmem // MIB} -> {want['memory']} MB")
    if facts.maxcpu and facts.maxcpu != want["cores"]:
        out.append(f"cores {facts.maxcpu} -> {want['cores']}")
    if want.get("node") and facts.node and want["node"] != facts.node:
        out.append(f"node {facts.node} -> {want['node']}")
    ha = state_change(want.get("ha"), facts)
    if ha:
        out.append(ha)
    if old:
        now, before = recorded(want), recorded(old)
        for key in sorted(want):
            if key in ("memory", "cores", "node") or (key == "ha" and ha) or before.get(key) == now[key]:
                continue
            out.append("description changed" if key == "description" else f"{key} {_short(old.get(key))} -> {_short(want[key])}")
    if not out and facts.settings_hash != res.settings_hash:
        out.append("settings changed")
    return out


def compare(res: Resource, facts: GuestFacts, record: dict[str, Any] | None) -> tuple[Action, Why, tuple[str, ...]] | None:
    want = res.settings
    if facts.maxdisk and want["rootfs_gb"] * GIB < facts.maxdisk:
        return Action.REBUILD, Why.CANNOT_UPDATE, (
            f"storage_size_gb shrinks from {facts.maxdisk // GIB} to {want['rootfs_gb']} GB, which only a rebuild can do",)
    drift = (facts.maxmem and facts.maxmem != want["memory"] * MIB) or (facts.maxcpu and facts.maxcpu != want["cores"]) \
        or state_change(want.get("ha"), facts) is not None
    stopped = stopped_by_hand(res, facts)
    if facts.settings_hash != res.settings_hash or drift:
        changes = settings_changes(res, facts, (record or {}).get("settings"))
        return Action.UPDATE, Why.SETTINGS_CHANGED, tuple([*changes, *([STOPPED_REASON] if stopped else [])])
    if stopped:
        return Action.UPDATE, Why.STOPPED, (STOPPED_REASON,)
    return None
