"""Layer identity: what goes into a layer's hash, and the settings Proxmox changes in place (pure).

A layer's *identity* hashes its build inputs: the parent's build id (or the OS template), the
config that needs a rebake, and the content of every script it runs. Its *build id* is new at each
bake, so a rebuilt parent (forced or not) changes its children's identity and they follow.
Settings Proxmox can change in place are hashed apart (`settings`), and never touch children.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the config models (pydantic) are needed to make layers, not to check them
    from .config.estate import Estate

FORMAT = 1  # bump when the way layers are built changes: every layer rebuilds


def digest(value: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:n]


@dataclass(frozen=True)
class Layer:
    """One guest as a build artifact."""

    ctid: int
    name: str
    parent: int | None
    role: str                  # "template" or "app"
    inputs: dict[str, str]     # input name -> digest, for explanations ("feature:vllm": "3f2a...")
    settings: dict[str, Any]   # in-place settings, resolved
    doc: str = ""              # one line for `doit list`: name, role, parent, scripts
    settings_hash: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings_hash", digest(self.settings, 10))
        # identity() hashes {"format", "inputs", "parent_build"} as digest() would; all but parent_build is fixed.
        object.__setattr__(self, "_identity_head", f'{{"format": {FORMAT}, "inputs": {json.dumps(self.inputs, sort_keys=True)}, ')

    @property
    def task(self) -> str:
        return f"ct{self.ctid}"

    def identity(self, parent_build: str | None) -> str:
        """The layer's identity given its parent's current build id."""
        text = f'{self._identity_head}"parent_build": {json.dumps(parent_build)}}}'  # type: ignore[attr-defined]
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def task_ctid(name: str) -> int | None:
    """The CTID of a layer's doit task name ('ct950' -> 950; the inverse of Layer.task), None for another name."""
    return int(name[2:]) if name.startswith("ct") and name[2:].isdigit() else None


def with_ancestors(layers: Mapping[int, Layer], ctids: Iterable[int]) -> set[int]:
    """These layers (those that exist) and every layer they are cloned from."""
    out: set[int] = set()
    for ctid in ctids:
        c: int | None = ctid
        while c is not None and c in layers and c not in out:
            out.add(c)
            c = layers[c].parent
    return out


def net0(estate: Estate, ctid: int) -> str | None:
    g, hyp = estate.guests[ctid], estate.hypervisor
    net = g.network_config
    if net is None:
        return None
    parts = [f"name={net.name}", f"bridge={net.bridge or hyp.network.bridge}"]
    if net.ip == "dhcp":
        parts.append("ip=dhcp")
    else:
        parts.append(f"ip={net.ip}")
        gw = net.gw or hyp.network.gateway
        if gw:
            parts.append(f"gw={gw}")
    if g.mac_address:
        parts.append(f"hwaddr={g.mac_address.upper()}")
    parts.append(f"firewall={int(net.firewall)}")
    return ",".join(parts)


def build_inputs(estate: Estate, ctid: int) -> dict[str, str]:
    """The inputs that need a rebake when they change, each digested on its own."""
    g, lib, hyp = estate.guests[ctid], estate.library, estate.hypervisor
    inputs: dict[str, str] = {}
    if g.clone_from_ctid is None:
        inputs["os_template"] = digest(estate.os_template(ctid).volume)
    inputs["config"] = digest({
        "unprivileged": g.unprivileged, "storage": estate.storage(ctid), "gpus": list(g.gpu_assignment),
        "snapshot": g.template_snapshot_name, "convert_to_template": g.convert_to_template,
        "locale": g.locale, "extra_packages": g.extra_packages, "unattended_upgrades": g.unattended_upgrades,
        "user": g.user_config.model_dump() if g.user_config else None, "timezone": hyp.timezone,
        "driver": hyp.nvidia.driver_version,
    })
    app_keys = {k: getattr(g, k) for k in type(g).model_fields if k.startswith(("vllm_", "portainer_"))}
    if g.application_script:
        inputs["app_config"] = digest(app_keys)
    inputs["lib"] = lib.lib_sha256()[:12]
    for name in g.features:
        inputs[f"feature:{name}"] = lib.feature(name).sha256[:12]
    if g.application_script:
        inputs[f"app:{g.application_script}"] = lib.app(g.application_script).sha256[:12]
    return inputs


def in_place_settings(estate: Estate, ctid: int) -> dict[str, Any]:
    """Settings Proxmox changes without a rebake, as they will be applied."""
    g = estate.guests[ctid]
    return {
        "hostname": g.name,
        "description": g.description,
        "cores": g.cores,
        "memory": g.memory_mb,
        "swap": g.swap_mb,
        "onboot": int(g.onboot),
        "protection": int(g.protection),
        "tags": sorted(g.tags),
        "net0": net0(estate, ctid),
        "nameserver": " ".join(str(n) for n in (g.nameservers or estate.hypervisor.network.nameservers)) or None,
        "searchdomain": estate.hypervisor.network.searchdomain,
        "features": g.pct_features.model_dump(),
        "rootfs_gb": g.storage_size_gb,
        "mount_points": [m.model_dump() for m in g.mount_points],
    }


def describe(estate: Estate, ctid: int, role: str) -> str:
    """One line on a layer: 'vllmQwen3Coder: app, clone of ct920; runs vllm_qwen3.sh'."""
    g = estate.guests[ctid]
    origin = f"clone of ct{g.clone_from_ctid}" if g.clone_from_ctid else f"from {estate.os_template(ctid).volume.split('/')[-1]}"
    scripts = ", ".join([*g.features, *([g.application_script] if g.application_script else [])]) or "no scripts"
    return f"{g.name}: {role}, {origin}; runs {scripts}"


def layers(estate: Estate) -> dict[int, Layer]:
    """Every layer of the estate, parents first."""
    out = {}
    for ctid in estate.order():
        g = estate.guests[ctid]
        role = "template" if g.is_template_layer or estate.children(ctid) else "app"
        out[ctid] = Layer(ctid, g.name, g.clone_from_ctid, role, build_inputs(estate, ctid),
                          in_place_settings(estate, ctid), describe(estate, ctid, role))
    return out
