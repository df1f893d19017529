"""A guest's gateway lies in the subnet of its address (one check for containers and VMs)."""

from __future__ import annotations

import ipaddress

from pydantic import ValidationInfo


def gateway_in_subnet(cls: type, gw: ipaddress.IPv4Address | None, info: ValidationInfo) -> ipaddress.IPv4Address | None:
    """A field validator of `gw` (after `ip`): the guest could not reach a gateway outside its own subnet."""
    ip = info.data.get("ip")
    if gw is None or not isinstance(ip, ipaddress.IPv4Interface) or gw in ip.network:
        return gw
    example = next(iter(ip.network.hosts()), ip.ip)
    raise ValueError(f"gateway {gw} is not in {ip.network}, the subnet of ip {ip}: a guest reaches its gateway in "
                     f"its own subnet; give a gateway inside it (e.g. {example}), or the ip's right prefix")
