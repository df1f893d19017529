"""The bridge check of a guest's network device, before any write: the bridge its net0 names must exist on the node
(and be VLAN-aware when net0 carries a VLAN tag). A real node creates a guest on a missing bridge and then fails to
start it; Phoenix refuses it first, naming the guest, the bridge and the bridges there are.

The node's network listing (GET /nodes/{node}/network) is read once per run and member (Context.once), and only by a
build's checks, so a run with nothing to do never reads it. Bridges that host:network makes in this run count as
there (it runs before every guest)."""

from __future__ import annotations

from typing import Any


def parse(net0: str | None) -> tuple[str | None, int | None]:
    """The bridge and the VLAN tag a net0 value names ('virtio,bridge=vmbr0,tag=20' -> ('vmbr0', 20))."""
    bridge: str | None = None
    tag: int | None = None
    for part in str(net0 or "").split(","):
        key, _, value = part.partition("=")
        if key == "bridge" and value:
            bridge = value
        elif key == "tag" and value.isdigit():
            tag = int(value)
    return bridge, tag


def _pending(ctx: Any) -> bool:
    """host:network is declared and not set up as configured: this run makes its bridges before any guest."""
    from .host import resources as R

    res = R.resources(ctx.estate).get(R.key("network"))
    if res is None:
        return False
    return (ctx.view.host_record(res.place["node"]).get(res.key) or {}).get("identity") != res.identity(None)


def bridges(ctx: Any) -> dict[str, bool]:
    """Each bridge on the node (as host:network leaves it, when this run sets it up): its VLAN awareness."""
    listing = ctx.once("node network", lambda: ctx.pve().get(f"nodes/{ctx.node}/network"))
    out = {str(i.get("iface")): bool(int(i.get("bridge_vlan_aware") or 0))
           for i in listing or () if i.get("type") in ("bridge", "OVSBridge")}
    host = ctx.estate.hypervisor.host
    if host is not None and host.network is not None and _pending(ctx):
        out.update({b.name: bool(b.vlan_aware) for b in host.network.bridges})
    return out


def problems_of(guest: str, net0: str | None, found: dict[str, bool], where: str) -> list[str]:
    """What is wrong with net0's bridge, given the node's bridges (pure)."""
    bridge, tag = parse(net0)
    if bridge is None:
        return []
    there = ", ".join(sorted(found)) or "none"
    if bridge not in found:
        return [f"{guest}: its network device is on bridge {bridge}, which does not exist on node {where} (bridges "
                f"there: {there}); a node creates such a guest and then cannot start it. Set its bridge to one of "
                f"those, or declare {bridge} under host.network.bridges of the hypervisor config"]
    if tag is not None and not found[bridge]:
        return [f"{guest}: its network device has VLAN tag {tag} on bridge {bridge}, which is not VLAN-aware on node "
                f"{where}: make {bridge} VLAN-aware (host.network.bridges[].vlan_aware: true), or remove the tag"]
    return []


def problems(ctx: Any, guest: str, net0: str | None, current: str | None = None) -> list[str]:
    """The bridge check of a build (current: the net0 the guest has now; an update whose bridge and tag are unchanged
    is not checked, and reads nothing)."""
    if net0 is None or (current is not None and parse(current) == parse(net0)):
        return []
    from ..errors import PhoenixError

    try:
        found = bridges(ctx)
    except PhoenixError as e:
        return [f"{guest}: cannot read the node's network to check bridge {parse(net0)[0]}: {e}"]
    return problems_of(guest, net0, found, ctx.node)
