"""The context file: a guest's resolved config, as scripts inside the guest read it (pure)."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from .config.estate import Estate
from .facts.node import NodeFacts
from .secrets import SECRET_NAMES


def os_of(volume: str) -> dict[str, str]:
    """ubuntu/24.04 from local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst."""
    name = volume.split("/")[-1]
    m = re.match(r"([a-z]+)-(\d+(?:\.\d+)?)", name)
    return {"id": m.group(1), "version": m.group(2)} if m else {"id": "unknown", "version": ""}


def build_context(estate: Estate, ctid: int, facts: NodeFacts | None = None) -> dict[str, Any]:
    """Everything a feature or app script may need about its guest; no secret values."""
    g, hyp = estate.guests[ctid], estate.hypervisor
    facts = facts or NodeFacts()
    net = g.network_config
    gpus = list(g.gpu_assignment)
    available = [s for s in SECRET_NAMES if getattr(hyp.secrets, f"{s}_file")]
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
            "driver_version": facts.nvidia_driver_version or hyp.nvidia.driver_version,
        },
        "docker": {
            "user": g.user_config.username if g.user_config else None,
            "nvidia_toolkit": bool(gpus),
        },
        "portainer": {
            "role": g.portainer_role,
            "port": g.portainer_port,
            "version": g.portainer_version,
            "data_dir": next((m.container_path for m in g.mount_points if "portainer" in m.container_path),
                             "/var/lib/portainer"),
        },
        "vllm": {
            "version": g.vllm_version,
            "model": g.vllm_model,
            "served_model_name": g.vllm_served_model_name or (g.vllm_model or "").split("/")[-1] or None,
            "port": g.vllm_port,
            "max_model_len": g.vllm_max_model_len,
            "gpu_memory_utilization": g.vllm_gpu_memory_utilization,
            "dtype": g.vllm_dtype,
            "tensor_parallel_size": max(1, len(gpus)),
            "args": list(g.vllm_args),
            "model_cache": next((m.container_path for m in g.mount_points if "model" in m.container_path),
                                "/var/lib/vllm/models"),
        },
        "mount_points": [m.container_path for m in g.mount_points],
        "secrets": available,
    }


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}_{re.sub(r'[^A-Za-z0-9]', '_', str(k)).upper()}", v, out)
    elif isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            out[prefix] = ",".join("" if v is None else str(v) for v in value)
        else:
            out[prefix] = json.dumps(value)
    elif isinstance(value, bool):
        out[prefix] = "true" if value else "false"
    else:
        out[prefix] = "" if value is None else str(value)


def to_env(context: dict[str, Any]) -> str:
    """The context as sourceable shell assignments: PHX_VLLM_MODEL='Qwen/...', lists comma-joined."""
    flat: dict[str, str] = {}
    _flatten("PHX", context, flat)
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(flat.items()))


def to_json(context: dict[str, Any]) -> str:
    return json.dumps(context, indent=2, sort_keys=True) + "\n"
