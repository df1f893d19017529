"""The node as layers, host:* , on the simulated host (which keeps the node's notes, network, access, APT repositories
and disks as state, as a real node does): set up once, a no-op after, a change touches only its part, and what could
cut the node off or erase a disk is refused before anything is written."""

from __future__ import annotations

import json
import re
import stat
from typing import Any

import pytest

from phoenix.pve.client import Pve
from phoenix.pve.endpoint import Endpoint

from .conftest import Checkout

HOST = {
    "repos": {"enterprise": False, "no_subscription": True},
    "storage": {"storages": [{"id": "vmdata", "type": "dir", "path": "/srv/vmdata", "content": ["snippets", "import", "iso"]},
                             {"id": "local", "type": "dir", "path": "/var/lib/vz",
                              "content": ["vztmpl", "iso", "backup", "snippets"]}],
                "new_disks": [{"device": "/dev/sdb", "kind": "zfs", "name": "fastpool", "confirm": "/dev/sdb"}]},
    "network": {"bridges": [{"name": "vmbr1", "ports": ["eno2"], "vlan_aware": True}]},
    "access": {"token_file": "phoenix_api_token.conf"},
    "nvidia": {},
}
PARTS = ("host:repos", "host:storage", "host:network", "host:access", "host:nvidia")
GUESTS = ("ct900", "ct901", "ct902", "ct910", "ct920", "ct950")


def with_host(co: Checkout, host: dict[str, Any] = HOST) -> None:
    path = co.root / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    data["host"] = host
    path.write_text(json.dumps(data, indent=1))


@pytest.fixture
def set_up(checkout: Checkout) -> Checkout:
    with_host(checkout)
    result = checkout.doit()
    assert result.rc == 0, result.output
    return checkout


def test_the_host_is_set_up_before_the_guests_and_a_second_run_changes_nothing(set_up: Checkout):
    co = set_up
    pve = co.pve
    out = json.loads((co.cache / "last-run.json").read_text())["tasks"]
    assert {k: v["outcome"] for k, v in out.items()} == dict.fromkeys((*PARTS, *GUESTS), "built")
    # what the node has now
    assert [r["Enabled"] for f in pve.node_state["apt"] for r in f["repositories"] if "pve-enterprise" in r["Components"]] == [0]
    assert any("pve-no-subscription" in r["Components"] and r["Enabled"] for f in pve.node_state["apt"] for r in f["repositories"])
    assert pve.storages["vmdata"]["content"] == "snippets,import,iso" and pve.storages["fastpool"]["type"] == "zfspool"
    assert pve.node_state["disks"][1]["used"] == "ZFS"
    assert pve.node_state["network"]["vmbr1"]["bridge_vlan_aware"] == 1 and pve.node_state["pending"] is None
    assert "phoenix@pve" in pve.node_state["users"] and "phoenix" in pve.node_state["users"]["phoenix@pve"]["tokens"]
    assert ("/", "token", "phoenix@pve!phoenix", "Phoenix") in {(a["path"], a["type"], a["ugid"], a["roleid"])
                                                               for a in pve.node_state["acl"]}
    token = co.root / "etc" / "phoenix_api_token.conf"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    secret = token.read_text().strip()
    logs = "".join(f.read_text() for f in (co.cache / "logs").glob("*.log"))
    assert secret not in logs and secret not in json.dumps(pve.node_state["description"])
    # the new token works, with privilege separation, against the node
    ep = Endpoint(co.sim.endpoint.url, "pve1", "phoenix@pve!phoenix", token, verify=co.sim.endpoint.verify)
    assert Pve.of(ep).get("version")
    # the record is in the node's notes
    assert re.search(r'phoenix-host: .*"host:nvidia"', pve.node_state["description"])
    # a second run: nothing to do, two reads (the guests' listing and the node's notes), no write
    mark = co.mark()
    again = co.doit()
    assert again.outcomes() == dict.fromkeys((*PARTS, *GUESTS), "up-to-date"), again.output
    assert [(m, p) for m, p, _ in pve.requests[mark:]] == [("GET", "/api2/json/cluster/resources"),
                                                           ("GET", "/api2/json/nodes/pve1/config")]


def test_a_change_to_one_part_rebuilds_that_part_only(set_up: Checkout):
    co = set_up
    host = json.loads(json.dumps(HOST))
    host["network"]["bridges"][0]["vlan_aware"] = False
    with_host(co, host)
    plan = co.doit("plan")
    assert re.search(r"host:network\s+rebuild: build settings changed", plan.output), plan.output
    assert all(re.search(rf"{k}\s+up-to-date", plan.output) for k in (*GUESTS, "host:storage")), plan.output
    mark = co.mark()
    result = co.doit()
    assert result.outcomes()["host:network"] == "built"
    writes = co.writes(mark)
    assert ("PUT", "/api2/json/nodes/pve1/network/vmbr1") in writes and ("PUT", "/api2/json/nodes/pve1/network") in writes
    assert not any("/lxc/" in p or "/storage" in p or "/access" in p for _, p in writes), writes
    assert co.pve.node_state["network"]["vmbr1"]["bridge_vlan_aware"] == 0


def test_a_fresh_checkout_against_a_set_up_node_changes_nothing(set_up: Checkout):
    co = set_up
    for path in co.cache.iterdir():
        if path.name != "sim":
            import shutil

            shutil.rmtree(path) if path.is_dir() else path.unlink()
    co.stop_sim()
    mark = 0
    result = co.doit()
    assert result.outcomes() == dict.fromkeys((*PARTS, *GUESTS), "up-to-date"), result.output
    assert co.writes(mark) == []


def refused(co: Checkout, expected: str) -> None:
    mark = co.mark()
    result = co.doit()
    assert result.rc == 1 and expected in result.output, result.output
    assert co.writes(mark) == [] and co.lease_writes(mark) == []


def test_a_change_to_the_management_bridge_is_refused_without_the_flag(set_up: Checkout):
    host = json.loads(json.dumps(HOST))
    host["network"]["bridges"].append({"name": "vmbr0", "ports": ["eno1", "eno3"], "cidr": "127.0.0.1/8"})
    with_host(set_up, host)
    refused(set_up, "vmbr0 carries the node's management address (127.0.0.1); changing its bridge_ports")
    host["network"]["allow_management_change"] = True
    with_host(set_up, host)
    assert set_up.doit().rc == 0
    assert set_up.pve.node_state["network"]["vmbr0"]["bridge_ports"] == "eno1 eno3"


def test_a_pool_is_made_only_on_a_disk_that_holds_nothing(checkout: Checkout):
    host = {"storage": {"new_disks": [{"device": "/dev/sda", "kind": "lvmthin", "name": "thin", "confirm": "/dev/sda"}]}}
    with_host(checkout, host)
    refused(checkout, "disk /dev/sda is in use (LVM): Phoenix makes a pool only on a disk that holds nothing")


def test_the_token_is_made_again_when_its_file_is_lost(set_up: Checkout):
    co = set_up
    token = co.root / "etc" / "phoenix_api_token.conf"
    old = token.read_text()
    token.unlink()
    co.doit("forget", "host:access")
    result = co.doit()
    assert result.outcomes()["host:access"] == "built", result.output
    assert token.read_text() != old and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert token.read_text().strip() not in result.output


@pytest.mark.parametrize(("host", "at", "says"), [
    # the README: a pool on a raw disk "only when declared, with the disk named again in `confirm`"
    ({"storage": {"new_disks": [{"device": "/dev/sdb", "kind": "zfs", "name": "fastpool", "confirm": "/dev/sdc"}]}},
     "host.storage.new_disks[0]", 'making a pool writes over /dev/sdb: set "confirm": "/dev/sdb" to say so (Phoenix '
     "also checks first that the disk holds nothing)"),
    ({"network": {"bridges": [{"name": "br0"}]}}, "host.network.bridges[0].name",
     "String should match pattern '^vmbr\\d{1,4}$' (got \"br0\")"),
])
def test_host_config_errors_name_the_fix(checkout: Checkout, capsys: pytest.CaptureFixture[str], host: dict, at: str,
                                         says: str):
    with_host(checkout, host)
    with pytest.raises(SystemExit) as stop:
        checkout.doit()
    assert stop.value.code == 2
    assert checkout.pve.requests == []
    err = capsys.readouterr().err
    assert err == ("phoenix: 1 problem(s) in the configuration (nothing on the host was touched):\n"
                   f"  - {checkout.root / 'etc' / 'phoenix_hypervisor_config.json'}: {at}: {says}\n"), err


def test_the_plan_says_what_would_be_refused(set_up: Checkout):
    host = json.loads(json.dumps(HOST))
    host["network"]["bridges"].append({"name": "vmbr0", "ports": ["eno9"]})
    with_host(set_up, host)
    plan = set_up.doit("plan")
    assert plan.rc == 1
    assert re.search(r"host:network\s+rebuild: build settings changed\n    check failed: vmbr0 carries the node's "
                     r"management address", plan.output), plan.output


def test_a_lost_token_file_is_made_again_by_the_next_run_without_a_forget(set_up: Checkout):
    # the README: the token's secret is written to token_file "(0600; made again if the file is lost)"
    co = set_up
    token = co.root / "etc" / "phoenix_api_token.conf"
    old = token.read_text()
    token.unlink()
    plan = co.doit("plan")
    assert re.search(r"host:access\s+rebuild: the token file .*phoenix_api_token.conf is missing \(or not 0600\): made again", plan.output), \
        plan.output
    assert re.search(r"ct900\s+up-to-date", plan.output), plan.output  # the guests do not depend on the file
    result = co.doit()
    assert result.rc == 0 and result.outcomes()["host:access"] == "built", result.output
    assert token.read_text() != old and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert co.doit().outcomes()["host:access"] == "up-to-date"


def test_the_role_has_exactly_the_privileges_phoenix_uses_and_those_the_readme_names(set_up: Checkout):
    # the README: host:access makes "a role with exactly the privileges Phoenix uses (PRIVILEGES)", and it grants what
    # export needs (VM.Backup, Datastore.AllocateSpace) and what VMs need (the VM.Config.* and the guest agent's)
    from phoenix.config.host import PRIVILEGES
    from tests.core.conftest import REPO

    assert set(set_up.pve.node_state["roles"]["Phoenix"]) == set(PRIVILEGES), set_up.pve.node_state["roles"]["Phoenix"]
    assert set_up.pve.node_state["users"]["phoenix@pve"]["tokens"]["phoenix"]["privsep"] == 1  # "with privilege separation"
    acl = {(a["path"], a["type"], a["ugid"], a["roleid"]) for a in set_up.pve.node_state["acl"]}
    assert {("/", "user", "phoenix@pve", "Phoenix"), ("/", "token", "phoenix@pve!phoenix", "Phoenix")} <= acl  # "on /"
    readme = (REPO / "README.md").read_text()
    export = readme.split("- **Privileges**", 1)[1].split("\n- ", 1)[0]
    vms = readme.split("### What a real host needs for VMs", 1)[1].split("\n###", 1)[0]
    named = set(re.findall(r"`((?:VM|Datastore|Sys)\.[A-Za-z.]+)`", export + vms)) - {"VM.Monitor"}  # PVE 8's
    assert named and named <= set(PRIVILEGES), sorted(named - set(PRIVILEGES))


def test_the_record_in_the_node_notes_keeps_the_persons_own_text(checkout: Checkout):
    # the README: the identity "is recorded in the node's notes (PUT /nodes/{node}/config description, the person's
    # own text kept)"
    mine = "Rack 4, left. Ask Dana before rebooting.\n\nUPS: apc-2"
    checkout.pve.node_state["description"] = mine
    with_host(checkout)
    assert checkout.doit().rc == 0
    notes = checkout.pve.node_state["description"]
    assert notes.startswith(mine) and re.search(r'phoenix-host: .*"host:access"', notes), notes
    host = json.loads(json.dumps(HOST))
    host["network"]["bridges"][0]["vlan_aware"] = False  # a second write of the record
    with_host(checkout, host)
    assert checkout.doit().rc == 0
    notes = checkout.pve.node_state["description"]
    assert notes.startswith(mine) and notes.count("phoenix-host:") == 1, notes


def test_a_storage_type_is_never_changed(set_up: Checkout):
    # the README: "A storage's type is never changed": refused before anything is written, the storage as it was
    host = json.loads(json.dumps(HOST))
    host["storage"]["storages"][0] = {"id": "vmdata", "type": "zfspool", "pool": "tank/vmdata",
                                      "content": ["images", "rootdir"]}
    with_host(set_up, host)
    refused(set_up, "storage 'vmdata' exists on the node as a dir storage, not zfspool: Phoenix does not change a "
                    "storage's type; fix the config or the storage")
    assert set_up.pve.storages["vmdata"]["type"] == "dir"


def test_a_guest_alone_brings_the_host_parts_it_needs_first(checkout: Checkout):
    # the README: "every guest after host:storage and host:network, a GPU layer after host:nvidia"
    with_host(checkout)
    plain = checkout.doit("ct900")
    assert plain.rc == 0, plain.output
    assert plain.outcomes() == dict.fromkeys(("host:storage", "host:network", "ct900"), "built"), plain.output
    gpu = checkout.doit("ct950")  # 950 has the nvidia feature; the driver's part follows the repositories'
    assert gpu.rc == 0, gpu.output
    assert {k for k, v in gpu.outcomes().items() if v == "built"} == {"host:repos", "host:nvidia", "ct901", "ct920",
                                                                      "ct950"}, gpu.output
    assert "host:access" not in gpu.outcomes() or gpu.outcomes()["host:access"] != "built"


def test_a_new_driver_version_rebuilds_the_driver_and_the_gpu_layers_only(set_up: Checkout):
    # the README: "A new driver version rebuilds the layers that run the `nvidia` feature and their clones (their
    # userland matches it); the others stay"
    co = set_up
    path = co.root / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    old = data["nvidia"]["driver_version"]
    data["nvidia"]["driver_version"] = "580.95.05" if old != "580.95.05" else "570.133.07"
    path.write_text(json.dumps(data, indent=1))
    plan = co.doit("plan")
    assert re.search(r"host:nvidia\s+rebuild: ", plan.output), plan.output
    assert re.search(r"ct901\s+rebuild: NVIDIA driver version changed", plan.output), plan.output
    result = co.doit()
    assert result.rc == 0, result.output
    assert {k for k, v in result.outcomes().items() if v != "up-to-date"} == {"host:nvidia", "ct901", "ct920",
                                                                              "ct950"}, result.output
    assert co.doit().outcomes() == dict.fromkeys((*PARTS, *GUESTS), "up-to-date")


def test_a_node_already_at_the_driver_version_changes_nothing(checkout: Checkout, monkeypatch: pytest.MonkeyPatch):
    # the README: "A node already at that version changes nothing" (the simulated node has no driver: here it has)
    from phoenix.facts.node import NodeFacts
    from phoenix.transport.simulated import SIMULATED_DEVICES, SimulatedNode

    version = json.loads((checkout.root / "etc" / "phoenix_hypervisor_config.json").read_text())["nvidia"]["driver_version"]
    monkeypatch.setattr(SimulatedNode, "facts", lambda self: NodeFacts(version, SIMULATED_DEVICES, "6.0.5-2"))
    with_host(checkout, {"nvidia": {}})
    result = checkout.doit("host:nvidia")
    assert result.rc == 0 and result.outcomes() == {"host:nvidia": "built"}, result.output  # its record only
    assert "install NVIDIA driver" not in result.output and "nvidia.sh" not in result.output, result.output
    runs = (checkout.cache / "sim" / "runs.jsonl")
    assert not runs.exists() or '"run_on_node"' not in runs.read_text()
    assert re.search(r'phoenix-host: .*"host:nvidia"', checkout.pve.node_state["description"])


def test_repositories_change_only_when_declared(checkout: Checkout):
    # the README: "the enterprise repositories off, the no-subscription one on (each only when declared)"
    def enabled(pve, component: str) -> list[int]:
        return [r["Enabled"] for f in pve.node_state["apt"] for r in f["repositories"] if component in r["Components"]]

    before = enabled(checkout.pve, "pve-enterprise")
    assert before and all(before)  # the simulated node starts as a fresh install does
    with_host(checkout, {"repos": {"no_subscription": True}})
    assert checkout.doit("host:repos").rc == 0
    assert enabled(checkout.pve, "pve-enterprise") == before and any(enabled(checkout.pve, "pve-no-subscription"))
    with_host(checkout, {"repos": {"enterprise": False}})
    assert checkout.doit("host:repos").rc == 0
    assert not any(enabled(checkout.pve, "pve-enterprise"))


def test_a_bridge_no_longer_declared_is_never_removed(set_up: Checkout):
    # the README: Linux bridges "made or changed ...; never removed"
    host = json.loads(json.dumps(HOST))
    host["network"]["bridges"] = [{"name": "vmbr2", "ports": ["eno3"]}]
    with_host(set_up, host)
    mark = set_up.mark()
    result = set_up.doit()
    assert result.rc == 0 and result.outcomes()["host:network"] == "built", result.output
    assert {"vmbr1", "vmbr2"} <= set(set_up.pve.node_state["network"])
    assert not [p for m, p in set_up.writes(mark) if m == "DELETE" and "/network" in p]


def test_a_storage_that_exists_gets_its_content_types_set_not_made_again(set_up: Checkout):
    # the README: "storages made or their content types set"
    host = json.loads(json.dumps(HOST))
    host["storage"]["storages"][1]["content"] = ["vztmpl", "iso", "backup", "snippets", "import"]
    with_host(set_up, host)
    mark = set_up.mark()
    result = set_up.doit()
    assert result.rc == 0 and result.outcomes()["host:storage"] == "built", result.output
    writes = [(m, p) for m, p in set_up.writes(mark) if "/storage" in p]
    assert writes == [("PUT", "/api2/json/storage/local")], writes
    assert set(set_up.pve.storages["local"]["content"].split(",")) == {"vztmpl", "iso", "backup", "snippets", "import"}


def test_a_vm_alone_brings_the_storage_and_network_parts_first(vm_checkout: Checkout):
    # the README: "every guest after host:storage and host:network" (a VM is a guest: its disks, snippets and
    # cloud image live on the storages, its NIC on the bridges)
    host = json.loads(json.dumps(HOST))
    host["storage"]["storages"][1]["content"] = ["vztmpl", "iso", "backup", "snippets", "import"]
    with_host(vm_checkout, host)
    result = vm_checkout.doit("vm9000")
    assert result.rc == 0, result.output
    assert result.outcomes() == dict.fromkeys(("host:storage", "host:network", "vm9000"), "built"), result.output


def test_content_that_host_storage_adds_is_seen_by_the_vm_built_after_it_in_the_same_run(vm_checkout: Checkout):
    # a fresh node: local has neither snippets nor import; host:storage declares both, and the VM after it uses them
    co = vm_checkout
    co.pve.storages["local"]["content"] = "iso,vztmpl,backup"
    host = {"storage": {"storages": [{"id": "local", "type": "dir", "path": "/var/lib/vz",
                                      "content": ["vztmpl", "iso", "backup", "snippets", "import"]}]}}
    with_host(co, host)
    result = co.doit("vm9000")
    assert result.rc == 0, result.output
    assert result.outcomes() == dict.fromkeys(("host:storage", "vm9000"), "built"), result.output


def test_content_that_host_storage_adds_is_seen_by_the_container_built_after_it(checkout: Checkout):
    co = checkout
    co.pve.storages["local"]["content"] = "iso,backup"  # no vztmpl yet: the OS template's storage
    host = {"storage": {"storages": [{"id": "local", "type": "dir", "path": "/var/lib/vz",
                                      "content": ["vztmpl", "iso", "backup", "snippets"]}]}}
    with_host(co, host)
    result = co.doit("ct900")
    assert result.rc == 0, result.output
    assert result.outcomes() == dict.fromkeys(("host:storage", "ct900"), "built"), result.output
    co.pve.storages["local"]["content"] = "iso,backup"  # taken away by hand: the next bake is refused, said
    assert co.doit("forget", "ct900").rc == 0
    refused(co, "storage 'local' (for the OS template local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst) "
                "does not take content 'vztmpl'")
