"""The node's own parts as resources, `host:<part>` (pure): their identity is their config slice (and, for the NVIDIA
driver, its version and the script that installs it)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ...config.files import resolve
from ...resources import Resource, digest

if TYPE_CHECKING:
    from ...config.estate import Estate

KIND = "host"
SCRIPT = "host/nvidia.sh"  # under images/
DOCS = {
    "repos": "the node's package repositories (APT repositories API)",
    "storage": "storages and their content types; pools made on raw disks when declared",
    "network": "Linux bridges and their VLAN awareness (then applied)",
    "access": "Phoenix's user, role and API token with privilege separation (its secret in a 0600 file)",
    "nvidia": "the NVIDIA driver on the node, at nvidia.driver_version (script images/host/nvidia.sh)",
}
NEEDS = {"nvidia": ("repos",)}  # a part set up after these, when they are declared
PER_NODE = ("repos", "network", "nvidia")  # each member has its own; storage.cfg and users, roles, tokens are the cluster's


def key(part: str, node: str | None = None) -> str:
    """host:nvidia, or on a cluster host:nvidia@pve2 for a part each member has its own of."""
    return f"host:{part}" + (f"@{node}" if node else "")


def members(estate: Estate, part: str) -> list[str | None]:
    """The members a part is set up on: [None] for the node itself (one node, or a part of the whole cluster); on a
    cluster, every member for repos and network, and the members with GPUs for the driver."""
    hyp = estate.hypervisor
    nodes = [n.name for n in hyp.proxmox.nodes or ()]
    if len(nodes) < 2 or part not in PER_NODE:
        return [None]
    if part == "nvidia":
        return [n for n in nodes if hyp.gpus_of(n)]
    return list(nodes)


def parts(estate: Estate) -> list[str]:
    host = estate.hypervisor.host
    return host.parts() if host is not None else []


def resources(estate: Estate) -> dict[str, Resource]:
    host = estate.hypervisor.host
    if host is None:
        return {}
    declared = host.parts()
    out = {}
    for part in declared:
        inputs = {"config": digest(getattr(host, part).model_dump(mode="json"))}
        if part == "nvidia":
            lib = estate.library
            script = lib.root / SCRIPT
            inputs["driver"] = digest(estate.hypervisor.nvidia.driver_version)
            inputs[f"script:{script.name}"] = hashlib.sha256(script.read_bytes()).hexdigest()[:12] if script.is_file() else ""
            inputs["lib"] = lib.lib_sha256()[:12]
        settings = {"token_file": str(resolve(estate.config_dir, getattr(host, part).token_file))} if part == "access" else {}
        for node in members(estate, part):
            deps = tuple(key(p, node if node in members(estate, p) else None) for p in NEEDS.get(part, ())
                         if p in declared)
            where = node or estate.hypervisor.proxmox.node
            doc = f"host: {DOCS[part]}" + (f", on {node}" if node else "")
            out[key(part, node)] = Resource(key(part, node), KIND, part, None, "host", inputs, settings, doc, deps=deps,
                                            place={"node": where})  # recorded in that node's notes
    return out


def dependencies(estate: Estate, gpus: bool) -> tuple[str, ...]:
    """The host parts a guest needs first: storage and network always, the driver when it has GPUs."""
    declared = parts(estate)
    wanted = ["storage", "network", *(["nvidia"] if gpus else [])]
    return tuple(key(p, node) for p in wanted if p in declared for node in members(estate, p))
