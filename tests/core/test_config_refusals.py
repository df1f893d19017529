"""Refusals of a bad value: one line per mistake, with the file, the path, the value, the rule and the fix; no word of
pydantic's (its validator names, `type=`, `input_value=`, its documentation links), exit 2, nothing on the host."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from phoenix.config.estate import load_estate
from phoenix.errors import ConfigError

from .conftest import copy_project, doit_command

LXC = "phoenix_lxc_configs.json"
VMS = "phoenix_vm_configs.json"
PYDANTIC = ("type=", "input_value=", "For further information visit", "literal[", "lax-or-strict", "function-",
            "Input is not a valid", "validator", "String should match pattern")


def edit(root: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = root / "etc" / name
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def ct(ctid: str, **changes: Any) -> tuple[str, Callable[[dict[str, Any]], None]]:
    return LXC, lambda d: d["lxc_configs"][ctid].update(changes)


def net(ctid: str, **changes: Any) -> tuple[str, Callable[[dict[str, Any]], None]]:
    return LXC, lambda d: d["lxc_configs"][ctid]["network_config"].update(changes)


def vm(index: int, **changes: Any) -> tuple[str, Callable[[dict[str, Any]], None]]:
    return VMS, lambda d: d["virtual_machines"][index].update(changes)


def rekey(old: str, new: str) -> tuple[str, Callable[[dict[str, Any]], None]]:
    return LXC, lambda d: d["lxc_configs"].__setitem__(new, d["lxc_configs"].pop(old))


# each case: the change, and the one line it must give (after "<file>: ")
CASES: dict[str, tuple[tuple[str, Callable[[dict[str, Any]], None]], str]] = {
    "ip out of range": (net("950", ip="10.0.0.300/24"), 'lxc_configs.950.network_config.ip: "10.0.0.300/24" is '
                        'not an IPv4 address with a prefix (e.g. 10.0.0.150/24) or "dhcp"'),
    "ip without prefix": (net("950", ip="10.0.0.150"), 'lxc_configs.950.network_config.ip: "10.0.0.150" has no '
                          "prefix: write the address with its network prefix, e.g. 10.0.0.150/24"),
    "ip not dhcp": (net("950", ip="DHCP"), 'lxc_configs.950.network_config.ip: "DHCP" is not an IPv4 address '
                    'with a prefix (e.g. 10.0.0.150/24) or "dhcp"'),
    "gateway outside the subnet": (net("950", gw="10.1.0.1"), 'lxc_configs.950.network_config.gw: gateway '
                                   "10.1.0.1 is not in 10.0.0.0/24, the subnet of ip 10.0.0.150/24: a guest reaches "
                                   "its gateway in its own subnet; give a gateway inside it (e.g. 10.0.0.1), or the "
                                   "ip's right prefix"),
    "gateway not an address": (net("950", gw="10.0.0.256"), 'lxc_configs.950.network_config.gw: "10.0.0.256" is '
                               "not an IPv4 address (e.g. 10.0.0.1)"),
    "mac": (ct("950", mac_address="52:54:00:67:89"), 'lxc_configs.950.mac_address: "52:54:00:67:89" is not a MAC '
            "address: six pairs of hex digits joined by ':' (e.g. 52:54:00:12:34:56)"),
    "ctid out of range": (rekey("950", "95"), 'lxc_configs.95: key "95" is not a CTID: a whole number from 100 '
                          'to 999999999, written as a string key (e.g. "950")'),
    "parent id out of range": (ct("950", clone_from_ctid=92), 'lxc_configs.950.clone_from_ctid: 92 is not a guest '
                               "id (VMID): a whole number from 100 to 999999999, as Proxmox allows"),
    "vmid out of range": (vm(3, vm_id=1000000000), "virtual_machines[3].vm_id: 1000000000 is not a guest id (VMID): "
                          "a whole number from 100 to 999999999, as Proxmox allows"),
    "vm ip": (vm(3, network_config={"ip": "10.0.0.300/24"}), 'virtual_machines[3].network_config.ip: "10.0.0.300/24" '
              'is not an IPv4 address with a prefix (e.g. 10.0.0.150/24) or "dhcp"'),
    "vmid of a container": (vm(3, vm_id=950), "virtual_machines[3].vm_id: VMID 950 is also a container in "),
    "vmid twice": (vm(3, vm_id=1001), "virtual_machines[3].vm_id: VMID 1001 is also given to virtual_machines[2]: a "
                   "VMID names one guest; give each VM its own"),
}


def refused(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_estate(root / "etc", root / "images")
    return [str(p) for p in info.value.problems]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("example") / "p", vms=True)


@pytest.mark.parametrize("case", list(CASES))
def test_one_mistake_is_one_line_with_the_rule(example: Path, tmp_path: Path, case: str):
    (name, change), line = CASES[case]
    root = tmp_path / "p"
    import shutil

    shutil.copytree(example, root)
    edit(root, name, change)
    found = refused(root)
    file = str(root / "etc" / name)
    assert len([p for p in found if p.startswith(file)]) == 1, found  # one mistake, one line
    assert any(p.startswith(f"{file}: {line}") for p in found), found
    assert not any(word in p for p in found for word in PYDANTIC), found


def test_a_bad_ip_through_doit_is_exit_2_and_one_line(tmp_path: Path):
    root = copy_project(tmp_path / "p")
    edit(root, *net("950", ip="10.0.0.300/24"))
    result = doit_command(root)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out and not any(word in out for word in PYDANTIC), out
    assert "1 problem(s) in the configuration (nothing on the host was touched)" in out, out
    assert (f'{root / "etc" / LXC}: lxc_configs.950.network_config.ip: "10.0.0.300/24" is not an IPv4 address '
            'with a prefix (e.g. 10.0.0.150/24) or "dhcp"') in out, out
    assert not (root / ".cache" / "sim" / "state.json").exists()  # the simulated host was never started


@pytest.mark.parametrize("key, value, looked, lives, meant", [
    ("features", ["nvidia", "dockr"], "images/features/dockr.sh", "feature scripts live in {images}/features/",
     "did you mean 'docker'?"),
    ("application_script", "phoenix_hypervisor_lxc_951.sh", "images/apps/phoenix_hypervisor_lxc_951.sh",
     "application scripts live in {images}/apps/", "did you mean 'phoenix_hypervisor_lxc_950.sh'?"),
])
def test_a_missing_script_says_where_it_looked_and_where_scripts_live(example: Path, tmp_path: Path, key: str,
                                                                      value: Any, looked: str, lives: str, meant: str):
    import shutil

    root = tmp_path / "p"
    shutil.copytree(example, root)
    edit(root, *ct("950", **{key: value}))
    [said] = [p for p in refused(root) if key in p]
    assert str(root / looked) in said and lives.format(images=root / "images") in said and meant in said, said


@pytest.mark.parametrize("path, shown", [
    ('$.lxc_configs["950"].network_config.ip', "lxc_configs.950.network_config.ip"),
    ("$.virtual_machines[1].features[0]", "virtual_machines[1].features[0]"),
    ('$.docker_stacks["my.app"].environments["dev"]', 'docker_stacks["my.app"].environments.dev'),
    ("$", ""),
    ("line 4", "line 4"),
])
def test_a_problem_names_the_key_as_a_person_reads_it(path: str, shown: str) -> None:
    from phoenix.errors import Problem, human_path

    assert human_path(path) == shown
    assert str(Problem("f.json", path, "bad")) == (f"f.json: {shown}: bad" if shown else "f.json: bad")
