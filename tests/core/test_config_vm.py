"""The VM config (phoenix_vm_configs): seed 002's shape, seed 004's spellings, defaults merged, clear problems."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from phoenix.config.estate import load_estate
from phoenix.config.vm import parent_of, vm_order
from phoenix.errors import ConfigError

from .conftest import REPO, copy_project
from .test_config import problems

VMF = "phoenix_vm_configs"


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return copy_project(tmp_path, vms=True)


def edit_vms(root: Path, fn) -> None:
    path = root / "etc" / f"{VMF}.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_example_estate_has_the_seed_vms_on_a_cloud_image_template():
    estate = load_estate(REPO / "etc", REPO / "images")
    vms = estate.vms
    assert sorted(vms) == [1001, 1002, 9000, 9001]
    assert {v: parent_of(vms, v) for v in vms} == {9000: None, 9001: 9000, 1001: 9001, 1002: 9001}
    assert vm_order(vms) == [9000, 9001, 1001, 1002]
    assert vms[9000].cloud_image == "ubuntu-24.04-cloud" and vms[9000].convert_to_template
    assert vms[9000].template_name is None  # a root inherits no template_name from the defaults
    assert vms[9001].features == ["base_setup", "docker"] and vms[9001].template_snapshot_name == "docker-golden"
    assert vms[1002].memory_mb == 8192 and vms[1001].memory_mb == 4096  # own key over vm_defaults
    assert vms[1001].cpu_sockets == 1 and vms[1001].network_model == "virtio"
    assert [s.model_dump() for s in vms[1002].docker_stacks] == [
        {"name": "qdrant_service", "environment": "production"},
        {"name": "thinkheads_ai_app", "environment": "development"}]
    assert estate.hypervisor.cloud_images["ubuntu-24.04-cloud"].volume.startswith("local:import/")


def test_seed_004_spellings_and_plain_stack_names(cfg: Path):
    def seed4(d):
        vm = d["virtual_machines"][3]
        vm["vmid"], vm["name"] = vm.pop("vm_id"), vm.pop("vm_name")
    edit_vms(cfg, seed4)
    schema = json.loads((REPO / "etc" / f"{VMF}.schema.json").read_text())
    jsonschema.validate(json.loads((cfg / "etc" / f"{VMF}.json").read_text()), schema)
    edit_vms(cfg, lambda d: d["virtual_machines"][3].update(docker_stacks=["qdrant_service"]))  # a plain name
    vms = load_estate(cfg / "etc", cfg / "images").vms
    assert vms[1002].vm_name == "qdrant-db"
    assert [(s.name, s.environment) for s in vms[1002].docker_stacks] == [("qdrant_service", None)]
    edit_vms(cfg, lambda d: d["virtual_machines"][3].update(docker_stacks=["portainer"]))  # not in the catalogue
    with pytest.raises(ConfigError, match=r"virtual_machines\[3\]\.docker_stacks\[0\]: no stack 'portainer'"):
        load_estate(cfg / "etc", cfg / "images")
    with pytest.raises(jsonschema.ValidationError):  # neither spelling of the id
        jsonschema.validate({"virtual_machines": [{"vm_name": "x"}]}, schema)


def test_yaml_file_is_read_like_json(cfg: Path):
    data = json.loads((cfg / "etc" / f"{VMF}.json").read_text())
    (cfg / "etc" / f"{VMF}.json").unlink()
    (cfg / "etc" / f"{VMF}.yaml").write_text(yaml.safe_dump(data))
    assert sorted(load_estate(cfg / "etc", cfg / "images").vms) == [1001, 1002, 9000, 9001]


def test_no_vm_file_means_no_vms(cfg: Path):
    (cfg / "etc" / f"{VMF}.json").unlink()
    estate = load_estate(cfg / "etc", cfg / "images")
    assert estate.vms == {} and estate.vm_file is None


def test_problems_name_file_path_and_fix(cfg: Path):
    def bad(d):
        vms = d["virtual_machines"]
        vms[0]["cloud_image"] = "debian-13"
        vms[1]["memroy_mb"] = 1
        vms[1]["template_name"] = "someone-elses-template"
        vms[2]["user_config"] = {"username": "u", "password_hash": "$6$x"}
        vms[3]["vm_id"] = 950  # a container's CTID
    edit_vms(cfg, bad)
    found = problems(cfg)
    f = str(cfg / "etc" / f"{VMF}.json")
    assert f"{f}: virtual_machines[1].memroy_mb: unknown key 'memroy_mb'; did you mean 'memory_mb'?" in found, found
    assert any(p.startswith(f"{f}: virtual_machines[2].user_config: ") and "password_hash_file" in p
               and "chmod 600" in p for p in found), found
    edit_vms(cfg, lambda d: (d["virtual_machines"][1].pop("memroy_mb"), d["virtual_machines"][2].pop("user_config")))
    found = problems(cfg)
    assert any("virtual_machines[0].cloud_image: cloud image 'debian-13' is not in cloud_images" in p
               and "ubuntu-24.04-cloud" in p for p in found), found
    assert any("virtual_machines[1].template_name: template_name 'someone-elses-template' is not a VM of this "
               "file: Phoenix clones only templates it builds" in p for p in found), found
    assert any("virtual_machines[3].vm_id: VMID 950 is also a container" in p for p in found), found


def test_clone_of_a_layer_that_is_no_template_is_refused(cfg: Path):
    edit_vms(cfg, lambda d: d["virtual_machines"][1].pop("template_snapshot_name"))
    found = problems(cfg)
    assert any("virtual_machines[1]: VM 1001 is cloned from it, so it needs template_snapshot_name" in p
               for p in found), found


def test_unknown_feature_and_both_spellings(cfg: Path):
    def bad(d):
        d["virtual_machines"][1]["features"] = ["base_setup", "dockr"]
        d["virtual_machines"][2]["vmid"] = 1001
    edit_vms(cfg, bad)
    found = problems(cfg)
    assert any("virtual_machines[2]: give vm_id or vmid (seed 004's spelling), not both" in p for p in found), found
    edit_vms(cfg, lambda d: d["virtual_machines"][2].pop("vmid"))
    found = problems(cfg)
    assert any("virtual_machines[1].features[1]: unknown feature 'dockr'" in p for p in found), found


@pytest.mark.parametrize("feature", ["nvidia", "vllm"])
def test_a_feature_that_needs_gpus_is_refused_on_a_vm(cfg: Path, feature: str):
    """VMs get no GPU passthrough from Phoenix: a GPU feature on one is a config error, not a layer that fails in the
    guest (the nvidia feature finds no /dev/nvidia*, the vllm feature no lock)."""
    edit_vms(cfg, lambda d: d["virtual_machines"][1].update(features=["base_setup", feature]))
    found = problems(cfg)
    assert any(f"virtual_machines[1].features[1]: {feature} needs GPUs, which Phoenix gives only to containers "
               "(gpu_assignment in phoenix_lxc_configs.json)" in p for p in found), found
    edit_vms(cfg, lambda d: d["virtual_machines"][1].update(features=["base_setup", "docker"]))
    assert load_estate(cfg / "etc", cfg / "images").vms[9001].features == ["base_setup", "docker"]


def test_a_vm_description_over_6144_utf8_bytes_is_refused(cfg: Path):
    # the README's VM table: description is "free text (at most 6144 UTF-8 bytes)"
    edit_vms(cfg, lambda d: d["virtual_machines"][3].update(description="é" * 3072))  # 6144 bytes: fine
    load_estate(cfg / "etc", cfg / "images")
    edit_vms(cfg, lambda d: d["virtual_machines"][3].update(description="é" * 3073))  # 6146 bytes
    found = problems(cfg)
    assert any(p.startswith(f'{cfg / "etc" / f"{VMF}.json"}: virtual_machines[3].description: ') and "6144" in p
               for p in found), found


def test_phoenix_defaults_when_neither_the_vm_nor_vm_defaults_say(cfg: Path):
    # the README's VM table: os_type l26, cpu_sockets 1, cpu_cores 2, memory_mb 4096, boot_disk_size_gb 32,
    # boot_disk_storage storage.rootdir, network_bridge network.bridge, network_model virtio; a VM's keys override
    # vm_defaults
    keys = ("os_type", "cpu_sockets", "cpu_cores", "memory_mb", "boot_disk_size_gb", "boot_disk_storage",
            "network_bridge", "network_model")

    def bare(d):
        for key in keys:
            d["vm_defaults"].pop(key, None)
            for vm in d["virtual_machines"]:
                vm.pop(key, None)

    edit_vms(cfg, bare)
    hyp = json.loads((cfg / "etc" / "phoenix_hypervisor_config.json").read_text())
    from phoenix.kinds.vm import resources as VR

    estate = load_estate(cfg / "etc", cfg / "images")
    vms = estate.vms
    vm = vms[1001]
    assert (vm.os_type, vm.cpu_sockets, vm.cpu_cores, vm.memory_mb, vm.boot_disk_size_gb) == ("l26", 1, 2, 4096, 32)
    assert vm.network_model == "virtio"
    assert VR.storage(estate, 1001) == hyp["storage"]["rootdir"]
    assert VR.net0(estate, 1001).startswith("virtio,") and f"bridge={hyp['network']['bridge']}" in VR.net0(estate, 1001)

    def override(d):
        d["vm_defaults"]["cpu_cores"] = 3
        d["virtual_machines"][3]["cpu_cores"] = 5

    edit_vms(cfg, override)
    vms = load_estate(cfg / "etc", cfg / "images").vms
    assert (vms[1001].cpu_cores, vms[1002].cpu_cores) == (3, 5)
