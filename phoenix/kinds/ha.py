"""Guests under the cluster's HA manager (`/cluster/ha/resources`), for the LXC and VM kinds (pure).

HA restarts a stopped guest and relocates one whose node fails, so a guest being replaced must leave HA first: a
rebuild removes its HA resource before it destroys anything and puts the declared one back after the record. A guest
found under HA whose config declares no `ha` is never rebuilt (nothing would put it back): one message says what to
do. Declared settings are kept in place like the others: the listing's `hastate` shows a missing or changed one at no
cost; the rest (group, restarts) are part of the in-place settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..facts.guests import GuestFacts

if TYPE_CHECKING:  # steps (its dataclasses take 10 ms to make) are not imported by a no-op
    from ..steps import Call, Step

KIND = {"lxc": "ct", "qemu": "vm"}
NOUN = {"lxc": "CT", "qemu": "VM"}


def sid(kind: str, vmid: int) -> str:
    """The HA resource id of a guest: ct:950, vm:1002."""
    return f"{KIND[kind]}:{vmid}"


def state_change(want: dict[str, Any] | None, facts: GuestFacts) -> str | None:
    """What the listing shows differs from the declared HA resource (None: nothing), in words."""
    if not want:
        return None
    if facts.hastate is None:
        return f"ha: not under HA -> {want['state']}"
    if facts.hastate != want["state"]:
        return f"ha: {facts.hastate} -> {want['state']}"
    return None


def refused(kind: str, vmid: int, where: str, facts: GuestFacts, declared: bool) -> list[str]:
    """A rebuild of a guest under HA that the config does not declare under HA: refused (nothing would put it back)."""
    if facts.hastate is None or declared:
        return []
    noun = NOUN[kind]
    return [f"{noun} {vmid} is under HA (ha-manager state {facts.hastate}) and {where} declares no ha: a rebuild would "
            f"take it out of HA for good. Declare `ha: {{state: {facts.hastate}}}` in {where} (Phoenix then removes it "
            f"from HA for the rebuild and puts it back), or take it out yourself: ha-manager remove {sid(kind, vmid)}"]


def remove(kind: str, vmid: int, why: str) -> Call:
    """Out of HA before the guest is stopped and destroyed (HA would start it again, or refuse the destroy)."""
    from ..steps import Call

    return Call(f"remove {sid(kind, vmid)} from HA ({why}; put back after the rebuild)", "DELETE",
                f"cluster/ha/resources/{sid(kind, vmid)}")


def put(kind: str, vmid: int, want: dict[str, Any], facts: GuestFacts | None, tags: str) -> Call:
    """The declared HA resource: made (POST) when the guest is not under HA, else set (PUT)."""
    from ..steps import Call, SetFacts

    if facts is None or facts.hastate is None:
        return Call(f"put {sid(kind, vmid)} under HA (state {want['state']})", "POST", "cluster/ha/resources",
                    {"sid": sid(kind, vmid), **want}, then=SetFacts(vmid, tags, {"hastate": want["state"]},
                                                                    keep_tags=True))
    return Call(f"set HA of {sid(kind, vmid)} (state {want['state']})", "PUT", f"cluster/ha/resources/{sid(kind, vmid)}",
                want, idempotent=True, then=SetFacts(vmid, tags, {"hastate": want["state"]}, keep_tags=True))


def after_build(kind: str, vmid: int, want: dict[str, Any] | None, tags: str) -> list[Step]:
    """The end of a bake or a restore: the new guest is put under HA when its config says so."""
    return [put(kind, vmid, want, None, tags)] if want else []
