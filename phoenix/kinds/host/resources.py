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


def key(part: str) -> str:
    return f"host:{part}"


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
        deps = tuple(key(p) for p in NEEDS.get(part, ()) if p in declared)
        settings = {"token_file": str(resolve(estate.config_dir, getattr(host, part).token_file))} if part == "access" else {}
        out[key(part)] = Resource(key(part), KIND, part, None, "host", inputs, settings, f"host: {DOCS[part]}", deps=deps,
                                  place={"node": estate.hypervisor.proxmox.node})  # recorded in that node's notes
    return out


def dependencies(estate: Estate, gpus: bool) -> tuple[str, ...]:
    """The host parts a guest needs first: storage and network always, the driver when it has GPUs."""
    declared = parts(estate)
    wanted = ["storage", "network", *(["nvidia"] if gpus else [])]
    return tuple(key(p) for p in wanted if p in declared)
