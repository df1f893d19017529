"""LXC layers as resources: what goes into a container layer's identity, and its in-place settings (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...resources import Resource, digest
from ..host import resources as host
from .datafiles import guest_files

if TYPE_CHECKING:  # the config models (pydantic) are needed to make resources, not to check them
    from ...config.estate import Estate

KIND = "lxc"


def task(ctid: int) -> str:
    """A container layer's doit task: 'ct950'."""
    return f"ct{ctid}"


def task_ctid(name: str) -> int | None:
    """The CTID of a container task name ('ct950' -> 950; the inverse of task), None for another name."""
    return int(name[2:]) if name.startswith("ct") and name[2:].isdigit() else None


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
    })
    if "nvidia" in g.features:  # the userland matches the node's driver: a new version rebakes this layer and its clones
        inputs["driver"] = digest(hyp.nvidia.driver_version)
    if g.application_script:
        inputs["app_config"] = digest(g.app_fields())  # the flat keys the identity has always hashed
    docker = estate.docker_settings(ctid)
    if "docker" in g.features and docker.source != "distro":  # the default is left out: identities made before it stay
        inputs["docker_source"] = digest(docker.source)
    inputs["lib"] = lib.lib_sha256()[:12]
    for name in g.features:
        inputs[f"feature:{name}"] = lib.feature(name).sha256[:12]
    for file, path in guest_files(estate, ctid).items():  # the vllm feature's lock: a new one rebakes the layer
        inputs[f"file:{file}"] = lib.file_sha256(path)[:12] or "missing"
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
        **({"node": g.node} if g.node else {}),  # only when named: a guest placed by Phoenix keeps its settings
        **({"ha": g.ha.params()} if g.ha else {}),
    }


def needs(estate: Estate, ctid: int) -> dict[str, Any]:
    """What the container needs of the node it is placed on (cluster.placement.Needs)."""
    from ...cluster.placement import Needs

    g = estate.guests[ctid]
    disk = estate.storage(ctid)
    storages = [(disk, "rootdir"), *((mp.storage, "rootdir") for mp in g.mount_points if mp.storage)]
    if g.clone_from_ctid is None:
        storages.append((estate.os_template(ctid).volume.split(":", 1)[0], "vztmpl"))
    return Needs(g.node, frozenset(g.gpu_assignment), tuple(dict.fromkeys(storages)), disk, g.memory_mb).to_json()


def describe(estate: Estate, ctid: int, role: str) -> str:
    """One line on a layer: 'vllmQwen3Coder: app, clone of ct920; runs vllm_qwen3.sh'."""
    g = estate.guests[ctid]
    origin = f"clone of ct{g.clone_from_ctid}" if g.clone_from_ctid else f"from {estate.os_template(ctid).volume.split('/')[-1]}"
    scripts = ", ".join([*g.features, *([g.application_script] if g.application_script else [])]) or "no scripts"
    return f"{g.name}: {role}, {origin}; runs {scripts}"


def resources(estate: Estate) -> dict[str, Resource]:
    """Every container layer of the estate, parents first."""
    out = {}
    for ctid in estate.order():
        g = estate.guests[ctid]
        role = "template" if g.is_template_layer or estate.children(ctid) else "app"
        parent = task(g.clone_from_ctid) if g.clone_from_ctid is not None else None
        out[task(ctid)] = Resource(task(ctid), KIND, g.name, parent, role, build_inputs(estate, ctid),
                                   in_place_settings(estate, ctid), describe(estate, ctid, role), vmid=ctid,
                                   deps=host.dependencies(estate, bool(g.gpu_assignment)), place=needs(estate, ctid),
                                   runs=not ((g.is_template_layer and estate.hypervisor.behavior.stop_templates_after_build)
                                             or g.convert_to_template))
    return out
