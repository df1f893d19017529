"""`proxmox.nodes`: the members of a Proxmox cluster Phoenix may place guests on, each with how to reach it.

Without it the cluster is read from the API: its members from the run's one listing, their SSH addresses and node ids
from /cluster/status when a build needs them. One API endpoint serves the whole cluster; each member's own `api_url`
is a fallback when the configured one does not answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from ..cluster.copies import COPY_STRIDE
from .strict import Strict

NODE_NAME = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"   # a Proxmox node name is a host name
NodeName = Annotated[str, Field(pattern=NODE_NAME)]


class ClusterNode(Strict):
    """One member of the cluster."""

    name: NodeName = Field(..., description="The node's name, as Proxmox lists it (pvecm nodes).")
    nodeid: int | None = Field(None, ge=1, le=9999, description="Its corosync node id (pvecm nodes): per-node copies of "
                               f"a layer get VMID nodeid * {COPY_STRIDE} + the layer's VMID. Read from /cluster/status "
                               "when not given.")
    api_url: str | None = Field(None, pattern=r"^https://[^/\s]+(:\d+)?/?$",
                                description="This node's API (https://pve2:8006): tried when proxmox.api_url does not "
                                            "answer.")
    fingerprint: str | None = Field(None, pattern=r"^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$",
                                    description="SHA-256 of this node's API certificate, for its api_url (each node has "
                                                "its own certificate; a ca_file of the cluster CA covers all).")
    ssh_host: str | None = Field(None, description="SSH address of the node (default: its address in /cluster/status).")
    ssh_port: int | None = Field(None, ge=1, le=65535, description="Default: ssh.port.")
    host_key_fingerprint: str | None = Field(None, pattern=r"^SHA256:[A-Za-z0-9+/]{43}=?$",
                                             description="Pin this node's SSH host key (as `ssh-keygen -lf` prints it).")
    gpus: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list,
                                                    description="GPU indexes present on this node (/dev/nvidiaN).")

    @field_validator("gpus")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("GPU indexes must be unique")
        return v


def check_members(nodes: list[ClusterNode]) -> list[str]:
    """What is wrong with the list as a whole (pure): names and node ids are unique."""
    out = []
    names = [n.name for n in nodes]
    for name in sorted({n for n in names if names.count(n) > 1}):
        out.append(f"node {name} is listed twice")
    ids = [n.nodeid for n in nodes if n.nodeid is not None]
    for nodeid in sorted({i for i in ids if ids.count(i) > 1}):
        out.append(f"nodeid {nodeid} is given to two nodes")
    return out


class HaResource(Strict):
    """The guest as a resource of the cluster's HA manager (`ha-manager add ct:950`): Phoenix keeps it so. A rebuild
    takes it out of HA first (HA would restart or relocate a guest being replaced) and puts it back after."""

    state: Literal["started", "stopped", "enabled", "disabled", "ignored"] = Field(
        "started", description="The state HA keeps the guest in (ha-manager's --state).")
    group: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$", description="Its HA group (ha-manager groups).")
    max_restart: int | None = Field(None, ge=0, le=10, description="Restarts on its node before it is relocated.")
    max_relocate: int | None = Field(None, ge=0, le=10, description="Relocations to other nodes before HA gives up.")

    def params(self) -> dict[str, Any]:
        """POST/PUT /cluster/ha/resources: what is declared."""
        return {k: v for k, v in self.model_dump().items() if v is not None}
