"""host:nvidia: the NVIDIA driver on the node at nvidia.driver_version, by images/host/nvidia.sh run on the node over
SSH (it blacklists nouveau, installs the driver, loads the modules with the uvm device nodes, enables the
persistence daemon, and checks nvidia-smi). Before anything runs, what the node has is read; after a driver that is
already right, only the GPU indexes are checked against the config."""

from __future__ import annotations

from typing import Any

from ...facts.node import NodeFacts
from ...steps import NodeScript, Step

REQUIRED = ("/dev/nvidiactl", "/dev/nvidia-uvm")


def installed(facts: NodeFacts, version: str) -> bool:
    """The node runs this driver version, with its control and uvm device nodes."""
    return facts.nvidia_driver_version == version and all(d in facts.nvidia_devices for d in REQUIRED)


def problems(facts: NodeFacts, version: str, gpus: list[int]) -> list[str]:
    """With the driver in place: every GPU the config names is on the node."""
    if not installed(facts, version):
        return []
    missing = [i for i in gpus if f"/dev/nvidia{i}" not in facts.nvidia_devices]
    if missing:
        found = ", ".join(d for d in facts.nvidia_devices if d[len("/dev/nvidia"):].isdigit()) or "none"
        return [f"nvidia.gpus names GPU(s) {', '.join(map(str, missing))} but the node has {found}: fix nvidia.gpus"]
    return []


def context(cfg: Any, version: str, gpus: list[int]) -> dict[str, Any]:
    return {"driver_version": version, "installer_url": cfg.installer_url.replace("{version}", version),
            "installer_sha256": cfg.installer_sha256 or "", "gpus": gpus}


def steps(cfg: Any, facts: NodeFacts, version: str, gpus: list[int], library: Any, key: str) -> list[Step]:
    if installed(facts, version):
        return []
    script = library.root / "host" / "nvidia.sh"
    return [NodeScript(f"install NVIDIA driver {version} on the node", key, script.name, script, library.lib_path,
                       context(cfg, version, gpus), timeout=3600.0)]
