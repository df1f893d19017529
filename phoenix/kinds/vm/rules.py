"""What only the VM kind can tell the planner: whose guest a VMID holds, and changes the identity does not see (pure)."""

from __future__ import annotations

from typing import Any

from ...facts.guests import GuestFacts
from ...plan import Action, Why
from ...resources import Resource
from ..ha import state_change
from ..lxc.rules import GIB, MIB, recorded
from ..running import REASON as STOPPED_REASON
from ..running import stopped_by_hand


def foreign(res: Resource, facts: GuestFacts) -> tuple[Why, str] | None:
    v = res.vmid
    if not facts.managed:
        what = "a template" if facts.template else "a VM" if facts.kind == "qemu" else "a container"
        return Why.FOREIGN, (f"VMID {v} holds {what} that Phoenix did not build (no 'phoenix' tag and record); Phoenix "
                             f"will not replace or clone it: give {res.key} another vm_id, or move or remove VMID {v} "
                             "yourself, then rerun")
    if facts.kind != "qemu":
        return Why.WRONG_KIND, f"VMID {v} is a container, not a VM"
    return None


def settings_changes(res: Resource, facts: GuestFacts, old: dict[str, Any] | None) -> list[str]:
    out = []
    want = res.settings
    if facts.maxmem and facts.maxmem != want["memory"] * MIB:
        out.append(f"memory {facts.maxmem // MIB} -> {want['memory']} MB")
    ha = state_change(want.get("ha"), facts)
    if ha:
        out.append(ha)
    if old:
        now, before = recorded(want), recorded(old)
        for key in sorted(want):
            if key != "memory" and not (key == "ha" and ha) and before.get(key) != now[key]:
                out.append("description changed" if key == "description" else f"{key} {old.get(key)} -> {want[key]}")
    if not out and facts.settings_hash != res.settings_hash:
        out.append("settings changed")
    return out


def compare(res: Resource, facts: GuestFacts, record: dict[str, Any] | None) -> tuple[Action, Why, tuple[str, ...]] | None:
    want = res.settings
    if facts.maxdisk and want["disk_gb"] * GIB < facts.maxdisk:
        return Action.REBUILD, Why.CANNOT_UPDATE, (
            f"boot_disk_size_gb shrinks from {facts.maxdisk // GIB} to {want['disk_gb']} GB, which only a rebuild can do",)
    drift = (facts.maxmem and facts.maxmem != want["memory"] * MIB) or state_change(want.get("ha"), facts) is not None
    stopped = stopped_by_hand(res, facts)
    if facts.settings_hash != res.settings_hash or drift:
        changes = settings_changes(res, facts, (record or {}).get("settings"))
        return Action.UPDATE, Why.SETTINGS_CHANGED, tuple([*changes, *([STOPPED_REASON] if stopped else [])])
    if stopped:
        return Action.UPDATE, Why.STOPPED, (STOPPED_REASON,)
    return None
