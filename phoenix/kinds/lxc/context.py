"""A container's context: its resolved config, as feature and app scripts read it inside the guest (pure)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ...facts.node import NodeFacts
from ...locks import vllm_lock_name
from ...secrets import SECRET_NAMES
from ...transport.base import FILES_DIR

if TYPE_CHECKING:
    from ...config.estate import Estate


def os_of(volume: str) -> dict[str, str]:
    """ubuntu/24.04 from local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst."""
    name = volume.split("/")[-1]
    m = re.match(r"([a-z]+)-(\d+(?:\.\d+)?)", name)
    return {"id": m.group(1), "version": m.group(2)} if m else {"id": "unknown", "version": ""}


def build_context(estate: Estate, ctid: int, facts: NodeFacts | None = None) -> dict[str, Any]:
    """Everything a feature or app script may need about its guest; no secret values."""
    g, hyp = estate.guests[ctid], estate.hypervisor
    portainer, vllm = g.app.portainer, g.app.vllm
    facts = facts or NodeFacts()
    net = g.network_config
    gpus = list(g.gpu_assignment)
    available = [s for s in SECRET_NAMES if hyp.secrets.file(s)]
    driver = facts.nvidia_driver_version or hyp.nvidia.driver_version
    docker = estate.docker_settings(ctid)
    return {
        "ctid": ctid,
        "name": g.name,
        "os": os_of(estate.os_template(ctid).volume),
        "features": estate.inherited_features(ctid),
        "timezone": hyp.timezone,
        "locale": g.locale,
        "extra_packages": list(g.extra_packages),
        "unattended_upgrades": g.unattended_upgrades,
        "user": g.user_config.model_dump() if g.user_config else None,
        "network": {
            "ip": str(net.ip) if net else "dhcp",
            "gateway": str(net.gw or hyp.network.gateway or "") if net else "",
        },
        "gpus": gpus,
        "gpu_count": len(gpus),
        "nvidia": {
            "driver_version": driver,
            "installer_sha256": estate.nvidia_installer_sha256(driver),
        },
        "docker": {
            "user": g.user_config.username if g.user_config else None,
            "nvidia_toolkit": bool(gpus),
            "source": docker.source,
            "login_user": docker.login_user,
        },
        "portainer": {
            "role": portainer.role,
            "port": portainer.port,
            "version": portainer.version,
            "data_dir": next((m.container_path for m in g.mount_points if "portainer" in m.container_path),
                             "/var/lib/portainer"),
        },
        "vllm": {
            "version": vllm.version,
            "lock": f"{FILES_DIR}/{vllm_lock_name(vllm.version)}",   # delivered with the vllm feature
            "model": vllm.model,
            "served_model_name": vllm.served_model_name or (vllm.model or "").split("/")[-1] or None,
            "port": vllm.port,
            "max_model_len": vllm.max_model_len,
            "gpu_memory_utilization": vllm.gpu_memory_utilization,
            "dtype": vllm.dtype,
            "tensor_parallel_size": max(1, len(gpus)),
            "args": list(vllm.args),
            "model_cache": next((m.container_path for m in g.mount_points if "model" in m.container_path),
                                "/var/lib/vllm/models"),
        },
        "mount_points": [m.container_path for m in g.mount_points],
        "secrets": available,
    }
