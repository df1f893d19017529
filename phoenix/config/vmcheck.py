"""Checks of the VM config that span VMs, files and the script library (each a Problem: file, JSON path, fix)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from ..errors import Problem
from ..features import Library
from .hypervisor import HypervisorConfig
from .vm import Vm, VmConfigs, parent_of


class Estate(Protocol):
    """What the checks read of the estate (config.estate.Estate, which imports this module)."""

    vm_file: Path | None
    hypervisor_file: Path
    lxc_file: Path
    vms: dict[int, Vm]
    hypervisor: HypervisorConfig
    guests: dict[int, Any]
    library: Library


def _at(vm: Vm, key: str = "") -> str:
    return f"$.virtual_machines[{vm.index}]" + (f".{key}" if key else "")


def check_vms(estate: Estate, configs: VmConfigs) -> list[Problem]:
    vf, hf = str(estate.vm_file), str(estate.hypervisor_file)
    vms, hyp = estate.vms, estate.hypervisor
    out: list[Problem] = []
    for i, e in enumerate(configs.virtual_machines):
        others = [str(j) for j, o in enumerate(configs.virtual_machines[:i]) if o.vm_id == e.vm_id]
        if others:  # said once, at each later entry
            out.append(Problem(vf, f"$.virtual_machines[{i}].vm_id",
                               f"VMID {e.vm_id} is also given to virtual_machines[{', '.join(others)}]: a VMID names "
                               "one guest; give each VM its own"))
        if e.vm_id in estate.guests:
            out.append(Problem(vf, f"$.virtual_machines[{i}].vm_id",
                               f"VMID {e.vm_id} is also a container in {estate.lxc_file}: Proxmox has one id space "
                               "for containers and VMs; choose another"))
    names = Counter(v.vm_name.lower() for v in vms.values())
    ips = Counter(str(v.network_config.ip.ip) for v in vms.values()
                  if v.network_config is not None and v.network_config.ip != "dhcp")
    by_name = {v.vm_name: v for v in vms.values()}
    for vmid, vm in vms.items():
        if names[vm.vm_name.lower()] > 1:
            out.append(Problem(vf, _at(vm, "vm_name"), f"name {vm.vm_name} is used by more than one VM"))
        net = vm.network_config
        if net is not None and net.ip != "dhcp" and ips[str(net.ip.ip)] > 1:
            out.append(Problem(vf, _at(vm, "network_config.ip"), f"IP address {net.ip.ip} is used by more than one VM"))
        if vm.cloud_image is not None:
            if vm.cloud_image not in hyp.cloud_images:
                known = ", ".join(sorted(hyp.cloud_images)) or "none defined"
                out.append(Problem(vf, _at(vm, "cloud_image"),
                                   f"cloud image {vm.cloud_image!r} is not in cloud_images of {hf} (known: {known})"))
        elif vm.clone_from_vmid is None and vm.template_name is None:
            out.append(Problem(vf, _at(vm), "a VM needs cloud_image (a root layer), clone_from_vmid or template_name "
                                            "(the VM layer it is cloned from)"))
        elif vm.clone_from_vmid is None and vm.template_name not in by_name:
            out.append(Problem(vf, _at(vm, "template_name"),
                               f"template_name {vm.template_name!r} is not a VM of this file: Phoenix clones only "
                               "templates it builds; define it here as a VM with cloud_image and convert_to_template: "
                               "true (or set clone_from_vmid)"))
        parent = parent_of(vms, vmid)
        if vm.clone_from_vmid is not None and vm.clone_from_vmid not in vms:
            out.append(Problem(vf, _at(vm, "clone_from_vmid"),
                               f"VM {vm.clone_from_vmid} is not defined in virtual_machines; define it or clone "
                               "another VMID"))
        elif parent is not None:
            p = vms[parent]
            if _cycle(vms, vmid):
                out.append(Problem(vf, _at(vm, "clone_from_vmid"), "the clone chain forms a cycle"))
                continue
            if not p.is_template_layer:
                out.append(Problem(vf, _at(p), f"VM {vmid} is cloned from it, so it needs template_snapshot_name or "
                                               "convert_to_template: true"))
            mine, theirs = vm.boot_disk_storage or hyp.storage.rootdir, p.boot_disk_storage or hyp.storage.rootdir
            if p.convert_to_template and mine != theirs:
                out.append(Problem(vf, _at(vm, "boot_disk_storage"),
                                   f"boot_disk_storage {mine!r} cannot apply: VM {vmid} is a linked clone of template "
                                   f"{parent}, and a linked clone's disk stays on its template's storage ({theirs!r}). "
                                   f"Set boot_disk_storage to {theirs!r} (or remove it), or change {parent}'s"))
            if vm.boot_disk_size_gb < p.boot_disk_size_gb:
                out.append(Problem(vf, _at(vm, "boot_disk_size_gb"),
                                   f"a clone cannot be smaller than its parent ({p.boot_disk_size_gb} GB)"))
        lib = estate.library
        for i, name in enumerate(vm.features):
            if not lib.exists(lib.feature_path(name)):
                out.append(Problem(vf, _at(vm, f"features[{i}]"), lib.missing_feature(name)))
            elif "gpu" in lib.feature(name).requires:
                out.append(Problem(vf, _at(vm, f"features[{i}]"),
                                   f"{name} needs GPUs, which Phoenix gives only to containers (gpu_assignment in "
                                   f"{estate.lxc_file.name}): run it in a container layer, or remove it from this VM"))
    return out


def _cycle(vms: dict[int, Vm], vmid: int) -> bool:
    seen = {vmid}
    cur = parent_of(vms, vmid)
    while cur is not None and cur in vms:
        if cur in seen:
            return True
        seen.add(cur)
        cur = parent_of(vms, cur)
    return False
