"""host:network: Linux bridges made or changed to what the config says, then applied. A change to the bridge that
carries the node's management address (the API's) is refused without allow_management_change: a mistake there
cuts the node off."""

from __future__ import annotations

import socket
from typing import Any

from ...steps import Call, Step


def read(ctx: Any) -> dict[str, Any]:
    return {i["iface"]: i for i in ctx.pve().get(f"nodes/{ctx.node}/network")}


def wanted(bridge: Any) -> dict[str, Any]:
    """A bridge as the API takes it."""
    out: dict[str, Any] = {"type": "bridge", "autostart": 1, "bridge_vlan_aware": int(bridge.vlan_aware),
                           "bridge_ports": " ".join(bridge.ports)}
    if bridge.cidr is not None:
        out["cidr"] = str(bridge.cidr)
    if bridge.gateway is not None:
        out["gateway"] = str(bridge.gateway)
    if bridge.comments is not None:
        out["comments"] = bridge.comments
    return out


def differs(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    """The keys whose values differ (a missing flag reads as 0, missing text as empty)."""
    def norm(key: str, value: Any) -> str:
        if key in ("bridge_vlan_aware", "autostart"):
            return str(int(bool(value)))
        return str(value or "").strip()
    return [k for k, v in want.items() if norm(k, v) != norm(k, have.get(k))]


def management(ifaces: dict[str, Any], api_host: str) -> str | None:
    """The interface whose address is the API's (the node's management address), if the network lists it."""
    try:
        address = socket.gethostbyname(api_host) if api_host else ""
    except OSError:
        address = ""
    for name, conf in ifaces.items():
        if address and (conf.get("address") == address or str(conf.get("cidr", "")).split("/")[0] == address):
            return name
    return None


def problems(cfg: Any, ifaces: dict[str, Any], api_host: str) -> list[str]:
    mgmt = management(ifaces, api_host)
    out = []
    for bridge in cfg.bridges:
        have = ifaces.get(bridge.name)
        if have is not None and have.get("type") != "bridge":
            out.append(f"{bridge.name} exists on the node as a {have.get('type')}, not a bridge: fix the config")
        elif have is not None and bridge.name == mgmt and differs(wanted(bridge), have) and not cfg.allow_management_change:
            out.append(f"{bridge.name} carries the node's management address ({api_host}); changing its "
                       f"{', '.join(differs(wanted(bridge), have))} could cut the node off. Nothing was changed. If you "
                       "are sure (console access at hand), set host.network.allow_management_change: true")
    return out


def steps(cfg: Any, ifaces: dict[str, Any], node: str) -> list[Step]:
    out: list[Step] = []
    for bridge in cfg.bridges:
        want = wanted(bridge)
        have = ifaces.get(bridge.name)
        if have is None:
            out.append(Call(f"add bridge {bridge.name}", "POST", f"nodes/{node}/network", {"iface": bridge.name, **want}))
        elif differs(want, have):
            out.append(Call(f"change bridge {bridge.name} ({', '.join(differs(want, have))})", "PUT",
                            f"nodes/{node}/network/{bridge.name}", want, idempotent=True))
    if out:
        out.append(Call("apply the network configuration", "PUT", f"nodes/{node}/network"))
    return out
