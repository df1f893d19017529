"""VM layers as resources: what goes into a VM layer's identity, and its in-place settings (pure).

A VM's identity holds its rendered cloud-init files (user-data and network-config, secrets as markers), so an
edit of cloudinit/*.yml.j2 rebuilds exactly the VMs whose files it changes; and the content of every feature
script it runs, so an edit of images/features/docker.sh rebuilds the VM layers that run it, and their clones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...resources import Resource, digest
from ..host import resources as host

if TYPE_CHECKING:
    from ...config.estate import Estate

KIND = "vm"


def task(vmid: int) -> str:
    """A VM layer's doit task: 'vm9001'."""
    return f"vm{vmid}"


def task_vmid(name: str) -> int | None:
    return int(name[2:]) if name.startswith("vm") and name[2:].isdigit() else None


def cloudinit_task(vmid: int) -> str:
    """The task that renders and checks a VM's cloud-init files: 'cloudinit:1001'."""
    return f"cloudinit:{vmid}"


def storage(estate: Estate, vmid: int) -> str:
    return estate.vms[vmid].boot_disk_storage or estate.hypervisor.storage.rootdir


def net0(estate: Estate, vmid: int) -> str:
    vm = estate.vms[vmid]
    return f"{vm.network_model},bridge={vm.network_bridge or estate.hypervisor.network.bridge}"


def build_inputs(estate: Estate, vmid: int) -> dict[str, str]:
    from ...cloudinit.render import identity_inputs, templates_dir
    from ...config.vm import parent_of

    vm, lib = estate.vms[vmid], estate.library
    inputs: dict[str, str] = {}
    if vm.cloud_image is not None:
        inputs["cloud_image"] = digest(estate.hypervisor.cloud_images[vm.cloud_image].volume)
    parent = parent_of(estate.vms, vmid)
    inputs["config"] = digest({
        "os_type": vm.os_type, "storage": storage(estate, vmid), "snapshot": vm.template_snapshot_name,
        "convert_to_template": vm.convert_to_template, "snippets": estate.hypervisor.storage.snippets,
        "linked": bool(parent is not None and estate.vms[parent].convert_to_template),
    })
    inputs.update(identity_inputs(templates_dir(lib.root), estate, vmid))
    if vm.features:
        inputs["lib"] = lib.lib_sha256()[:12]
    for name in vm.features:
        inputs[f"feature:{name}"] = lib.feature(name).sha256[:12]
    return inputs


def in_place_settings(estate: Estate, vmid: int) -> dict[str, Any]:
    """Settings Proxmox changes without a rebuild, as they will be applied."""
    vm = estate.vms[vmid]
    out = {"name": vm.vm_name, "description": vm.description, "sockets": vm.cpu_sockets, "cores": vm.cpu_cores,
           "memory": vm.memory_mb, "tags": sorted(vm.tags), "net0": net0(estate, vmid),
           "disk_gb": vm.boot_disk_size_gb}
    if vm.node:  # only when named (a VM placed by Phoenix keeps the settings it always had): a new node moves it
        out["node"] = vm.node
    if vm.ha and not vm.is_template_layer:
        out["ha"] = vm.ha.params()
    return out


def needs(estate: Estate, vmid: int) -> dict[str, Any]:
    """What the VM needs of the node it is placed on (cluster.placement.Needs)."""
    from ...cluster.placement import Needs
    from ...config.vm import parent_of

    vm, hyp = estate.vms[vmid], estate.hypervisor
    disk = storage(estate, vmid)
    storages = [(disk, "images"), (hyp.storage.snippets, "snippets")]
    if vm.cloud_image is not None:
        storages.append((hyp.cloud_images[vm.cloud_image].volume.split(":", 1)[0], "import"))
    parent = parent_of(estate.vms, vmid)
    linked = parent is not None and parent in estate.vms and estate.vms[parent].convert_to_template
    return Needs(vm.node, frozenset(), tuple(storages), disk, vm.memory_mb, linked).to_json()


def describe(estate: Estate, vmid: int, role: str, parent: int | None) -> str:
    vm = estate.vms[vmid]
    origin = f"clone of vm{parent}" if parent is not None else f"from cloud image {vm.cloud_image}"
    return f"{vm.vm_name}: VM {role}, {origin}; runs {', '.join(vm.features) or 'no scripts'}"


def resources(estate: Estate) -> dict[str, Resource]:
    """Every VM layer of the estate, parents first."""
    from ...config.vm import parent_of, vm_order

    out = {}
    for vmid in vm_order(estate.vms):
        vm = estate.vms[vmid]
        parent = parent_of(estate.vms, vmid)
        children = any(parent_of(estate.vms, v) == vmid for v in estate.vms)
        role = "template" if vm.is_template_layer or children else "app"
        out[task(vmid)] = Resource(task(vmid), KIND, vm.vm_name, task(parent) if parent is not None else None, role,
                                   build_inputs(estate, vmid), in_place_settings(estate, vmid),
                                   describe(estate, vmid, role, parent), vmid=vmid,
                                   deps=host.dependencies(estate, False),  # VMs get no GPU: storage, network
                                   place=needs(estate, vmid), runs=not vm.is_template_layer)
    return out
