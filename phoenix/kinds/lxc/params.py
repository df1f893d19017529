"""The parameters of each Proxmox call and `pct set` Phoenix makes for a layer (pure)."""

from __future__ import annotations

import re
from typing import Any

from ...errors import PhoenixError

SHARED_NVIDIA = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
CUDA_NVIDIA = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")   # a GPU guest cannot run CUDA without


def features_value(flags: dict[str, bool]) -> str:
    return ",".join(f"{k}=1" for k in ("nesting", "keyctl", "fuse", "mknod") if flags.get(k))


def token_may_set_features(flags: dict[str, bool], unprivileged: bool = True) -> bool:
    """An API token may set nesting only, and only on an unprivileged container; any other flag, and any change of the
    flags of a privileged container (even removing them), needs root@pam (the node transport)."""
    return unprivileged and not any(v for k, v in flags.items() if k != "nesting")


def mount_points(settings: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(mpN for the API: volumes, mpN for `pct set`: bind mounts of host paths)."""
    api, root = {}, {}
    for i, mp in enumerate(settings["mount_points"]):
        ro = ",ro=1" if mp["read_only"] else ""
        if mp["host_path"]:
            root[f"mp{i}"] = f"{mp['host_path']},mp={mp['container_path']}{ro}"
        else:
            api[f"mp{i}"] = f"{mp['storage']}:{mp['size_gb']},mp={mp['container_path']}{ro}"
    return api, root


def gpu_devices(gpus: list[int], node_devices: tuple[str, ...]) -> dict[str, str]:
    """devN entries for the assigned GPUs: their /dev/nvidiaN and the shared control nodes present."""
    present = set(node_devices)
    if gpus and not present:
        raise PhoenixError(f"GPUs {', '.join(map(str, gpus))} are assigned but the node reports no NVIDIA device "
                           "(no /dev/nvidia*): install the NVIDIA driver on the node and load its modules, or remove "
                           "gpu_assignment")
    devices = []
    for index in gpus:
        path = f"/dev/nvidia{index}"
        if path not in present:
            raise PhoenixError(f"GPU {index} is assigned but {path} is not on the node (found: {', '.join(sorted(present))})")
        devices.append(path)
    if gpus:
        lacking = [d for d in CUDA_NVIDIA if d not in present]
        if lacking:
            raise PhoenixError(f"GPUs are assigned but {', '.join(lacking)} {'is' if len(lacking) == 1 else 'are'} not on "
                               "the node: CUDA needs them (load nvidia_uvm and make the nodes: nvidia-modprobe -c0 -u; "
                               "host:nvidia does both at boot)")
        devices += [d for d in SHARED_NVIDIA if d in present]
        devices += sorted(d for d in present if d.startswith("/dev/nvidia-caps/"))
    return {f"dev{i}": d for i, d in enumerate(devices)}


def config_params(settings: dict[str, Any], *, tags: str, description: str, unprivileged: bool = True) -> dict[str, Any]:
    """What the API may set with a token: PUT /lxc/{vmid}/config."""
    params: dict[str, Any] = {
        "hostname": settings["hostname"], "description": description, "cores": settings["cores"],
        "memory": settings["memory"], "swap": settings["swap"], "onboot": settings["onboot"],
        "protection": settings["protection"], "tags": tags,
    }
    if settings["net0"]:
        params["net0"] = settings["net0"]
    if settings["nameserver"]:
        params["nameserver"] = settings["nameserver"]
    if settings["searchdomain"]:
        params["searchdomain"] = settings["searchdomain"]
    if token_may_set_features(settings["features"], unprivileged):
        params["features"] = features_value(settings["features"])
        if not params["features"]:
            params.pop("features")
            params["delete"] = "features"
    api_mps, _ = mount_points(settings)
    params.update(api_mps)
    return params


def building_params(settings: dict[str, Any], *, tags: str, description: str, unprivileged: bool = True) -> dict[str, Any]:
    """The config of a layer while it is built: onboot is held at 0, a half-built guest never starts with the node."""
    return {**config_params(settings, tags=tags, description=description, unprivileged=unprivileged), "onboot": 0}


def record_params(settings: dict[str, Any], *, tags: str, description: str) -> dict[str, Any]:
    """The PUT /lxc/{vmid}/config that ends a bake: the record, and onboot (held at 0 while half-built)."""
    return {"tags": tags, "description": description, "onboot": settings["onboot"]}


def root_options(settings: dict[str, Any], devices: dict[str, str], unprivileged: bool = True) -> dict[str, str]:
    """What only root@pam may set, for `pct set` over the node transport."""
    out: dict[str, str] = {}
    if not token_may_set_features(settings["features"], unprivileged) and features_value(settings["features"]):
        out["features"] = features_value(settings["features"])
    _, binds = mount_points(settings)
    out.update(binds)
    out.update(devices)
    return out


def create_params(ctid: int, settings: dict[str, Any], *, ostemplate: str, storage: str, unprivileged: bool,
                  tags: str, description: str) -> dict[str, Any]:
    """POST /nodes/{node}/lxc for a root layer."""
    params = {"vmid": ctid, "ostemplate": ostemplate, "storage": storage,
              "rootfs": f"{storage}:{settings['rootfs_gb']}", "unprivileged": int(unprivileged)}
    put = building_params(settings, tags=tags, description=description, unprivileged=unprivileged)
    put.pop("delete", None)  # nothing to delete on a new guest
    return {**params, **put}


def clone_params(ctid: int, name: str, *, snapname: str | None, linked: bool, storage: str, description: str) -> dict[str, Any]:
    """POST /nodes/{node}/lxc/{parent}/clone."""
    params: dict[str, Any] = {"newid": ctid, "hostname": name, "description": description}
    if snapname:
        params["snapname"] = snapname
    if linked:
        params["full"] = 0
    else:
        params["full"] = 1
        params["storage"] = storage
    return params


def volume_filename(volume: str) -> tuple[str, str]:
    """('local', 'ubuntu-24.04-standard_24.04-2_amd64.tar.zst') from local:vztmpl/ubuntu-..."""
    m = re.match(r"^([^:]+):vztmpl/(.+)$", volume)
    if not m:
        raise PhoenixError(f"not a template volume: {volume}")
    return m.group(1), m.group(2)
