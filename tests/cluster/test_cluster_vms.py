"""VMs on the simulated three-node cluster: a clone across members only where Proxmox makes one, HA kept."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from .conftest import ClusterCheckout, cluster_audited


def vm_cluster(root: Path, disks: str | None, nodes: dict[int, str]) -> ClusterCheckout:
    co = ClusterCheckout(root, vms=True)
    path = co.root / "etc" / "phoenix_vm_configs.json"
    data = json.loads(path.read_text())
    for vm in data["virtual_machines"]:
        vm.pop("docker_stacks", None)    # VMs here (tests/stacks has the stacks)
        if disks:
            vm["boot_disk_storage"] = disks
        if vm["vm_id"] in nodes:
            vm["node"] = nodes[vm["vm_id"]]
    path.write_text(json.dumps(data))
    return co


@pytest.fixture
def across(tmp_path: Path):
    with cluster_audited(vm_cluster(tmp_path / "phoenix", "ceph", {1001: "pve1", 1002: "pve2"})) as co:
        yield co


def test_a_vm_on_shared_storage_is_cloned_across_with_target(across: ClusterCheckout):
    co = across
    result = co.doit()
    assert result.rc == 0, result.output
    assert {v: co.on(v) for v in (9000, 9001, 1001, 1002)} == {9000: "pve1", 9001: "pve1", 1001: "pve1", 1002: "pve2"}
    clones = {int(b["newid"]): (p, b) for m, p, b in ((m, p, dict(parse_qsl(b.decode())))
                                                       for m, p, b in co.pve.requests if m == "POST")
              if p.endswith("/clone")}
    assert clones[1002][0] == "/api2/json/nodes/pve1/qemu/9001/clone"
    assert clones[1002][1]["target"] == "pve2" and clones[1002][1]["storage"] == "ceph"
    assert "target" not in clones[1001][1]
    assert "vm1002 full clone of vm9001@docker-golden on pve1, to pve2" in result.output
    mark = co.mark()
    assert co.doit().rc == 0 and len(co.pve.requests) - mark == 1


def test_a_vm_on_local_storage_is_not_cloned_to_another_member(tmp_path: Path):
    with cluster_audited(vm_cluster(tmp_path / "phoenix", None, {1001: "pve1", 1002: "pve2"})) as co:
        result = co.doit()
        assert result.rc == 1 and "Traceback" not in result.output, result.output
        assert ("VM 1002 is placed on pve2 and its parent VM 9001 is on pve1: VM 9001's disk (local-lvm) or its own "
                "(local-lvm) is on storage local to a member") in result.output
        assert "Set node: pve1 on VM 1002, or put both boot disks on a shared storage" in result.output
        assert co.pve.vm(1002) is None
        assert not any(p.endswith("/clone") and "qemu" in p and "pve2" in p for m, p, _ in co.pve.requests)


def test_a_vm_under_ha_is_taken_out_for_its_rebuild_and_put_back(across: ClusterCheckout):
    co = across
    assert co.doit().rc == 0
    path = co.root / "etc" / "phoenix_vm_configs.json"
    data = json.loads(path.read_text())
    vm = next(v for v in data["virtual_machines"] if v["vm_id"] == 1002)
    vm["boot_disk_size_gb"] = 40                                                 # grows: in place
    path.write_text(json.dumps(data))
    assert co.doit().rc == 0
    co.pve.node_state.setdefault("ha", {})["vm:1002"] = {"state": "started"}   # `ha-manager add vm:1002` by hand
    co.pve.ha_apply()
    vm["boot_disk_size_gb"] = 32                                                 # shrinks: only a rebuild does it
    path.write_text(json.dumps(data))
    mark = co.mark()
    refused = co.doit()
    assert refused.rc == 1 and "VM 1002 is under HA (ha-manager state started)" in refused.output, refused.output
    assert "ha-manager remove vm:1002" in refused.output and co.writes(mark) == []
    vm["ha"] = {"state": "started"}
    path.write_text(json.dumps(data))
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0, result.output
    writes = co.writes(mark)
    assert writes.index(("DELETE", "/api2/json/cluster/ha/resources/vm:1002")) < \
        writes.index(("DELETE", "/api2/json/nodes/pve2/qemu/1002"))
    assert writes[-1] == ("POST", "/api2/json/cluster/ha/resources") and co.pve.vm(1002).ha_state == "started"
    mark = co.mark()
    assert co.doit().rc == 0 and len(co.pve.requests) - mark == 1
