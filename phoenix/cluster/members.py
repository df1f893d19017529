"""How Phoenix reaches each member of the cluster over SSH, and what /cluster/status says of the members (pure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import PhoenixError

if TYPE_CHECKING:
    from ..config.hypervisor import HypervisorConfig, SshConfig


def addresses(status: list[dict[str, Any]]) -> dict[str, str]:
    """Each member's address from GET /cluster/status (its cluster network address)."""
    return {str(i["name"]): str(i["ip"]) for i in status if i.get("type") == "node" and i.get("name") and i.get("ip")}


def nodeids(status: list[dict[str, Any]]) -> dict[str, int]:
    """Each member's corosync node id from GET /cluster/status."""
    return {str(i["name"]): int(i["nodeid"]) for i in status if i.get("type") == "node" and i.get("nodeid")}


def quorate(status: list[dict[str, Any]]) -> bool:
    """Whether the cluster has quorum (a single node without a cluster always has)."""
    return all(int(i.get("quorate", 1)) == 1 for i in status if i.get("type") == "cluster")


def ssh_of(hypervisor: HypervisorConfig, node: str, found: Callable[[], dict[str, str]],
           api_host: str = "") -> tuple[SshConfig, str]:
    """The SSH settings and address of a member: its proxmox.nodes entry (address, port, host key pin); for the API's
    node ssh.host or the API's host; else its address in /cluster/status (found() reads it). User, key and
    known_hosts are the ssh section's."""
    member = hypervisor.proxmox.member(node)
    ssh = hypervisor.ssh
    changes: dict[str, Any] = {"host": None}
    host = member.ssh_host if member is not None else None
    if member is not None:
        if member.ssh_port is not None:
            changes["port"] = member.ssh_port
        changes["host_key_fingerprint"] = member.host_key_fingerprint
    if host is None and node == hypervisor.proxmox.node:
        host = ssh.host or api_host
    if not host:
        host = found().get(node)
    if not host:
        raise PhoenixError(f"no SSH address for node {node}: give proxmox.nodes[].ssh_host for it (the cluster's "
                           "status names no address)")
    return ssh.model_copy(update=changes), host
