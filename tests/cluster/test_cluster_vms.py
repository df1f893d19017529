"""VMs on the simulated three-node cluster: a clone across members only where Proxmox makes one, else from the
parent layer's copy on the clone's member; HA kept."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from phoenix.facts.guests import split_tags

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


def posts(co: ClusterCheckout, since: int = 0) -> list[tuple[str, dict[str, str]]]:
    return [(p, dict(parse_qsl(b.decode()))) for m, p, b in co.pve.requests[since:] if m == "POST"]


def clones(co: ClusterCheckout, since: int = 0) -> dict[int, tuple[str, dict[str, str]]]:
    """Each clone of the log by its new VMID: (path, parameters)."""
    return {int(b["newid"]): (p, b) for p, b in posts(co, since) if p.endswith("/clone")}


def layer(guest) -> set[str]:
    """The layer's record in a guest's tags: identity and build."""
    return {t for t in split_tags(guest.config.get("tags")) if t.startswith(("phx-id-", "phx-b-"))}


def edit_vm(co: ClusterCheckout, vmid: int, **changes) -> None:
    path = co.root / "etc" / "phoenix_vm_configs.json"
    data = json.loads(path.read_text())
    next(v for v in data["virtual_machines"] if v["vm_id"] == vmid).update(changes)
    path.write_text(json.dumps(data))


# local-lvm everywhere: the template 9000 on pve1, its linked clone 9001 (a snapshot-template) on pve2, and the full
# clones of 9001 on both members: each layer is baked once and copied to the other member once
SPREAD = {9000: "pve1", 9001: "pve2", 1001: "pve1", 1002: "pve2"}


@pytest.fixture
def spread(tmp_path: Path):
    with cluster_audited(vm_cluster(tmp_path / "phoenix", None, SPREAD)) as co:
        result = co.doit()
        assert result.rc == 0, result.output
        co.first = result
        yield co


def test_a_vm_layer_on_local_storage_is_copied_to_the_member_its_clones_go_to(spread: ClusterCheckout):
    co = spread
    assert {v: co.on(v) for v in SPREAD} == SPREAD
    template = co.pve.vm(209000)                       # 9000's copy on pve2 (node id 2), restored as a template
    assert template is not None and template.node == "pve2"
    assert template.template and template.config.get("template") == 1
    assert "phx-copy-9000" in split_tags(template.config.get("tags")) and layer(template) == layer(co.pve.vm(9000))
    golden = co.pve.vm(109001)                         # 9001's copy on pve1, its snapshot made again
    assert golden is not None and golden.node == "pve1" and not golden.template
    assert "docker-golden" in golden.snapshots and layer(golden) == layer(co.pve.vm(9001))
    assert "phx-copy-9001" in split_tags(golden.config.get("tags"))
    made = clones(co)
    assert made[9001][0] == "/api2/json/nodes/pve2/qemu/209000/clone" and "full" not in made[9001][1]  # linked, there
    assert made[1001][0] == "/api2/json/nodes/pve1/qemu/109001/clone"                 # from the copy, on its member
    assert made[1001][1]["snapname"] == "docker-golden" and "target" not in made[1001][1]
    assert made[1002][0] == "/api2/json/nodes/pve2/qemu/9001/clone"
    sent = posts(co)
    assert [(p, b["vmid"]) for p, b in sent if p.endswith("/vzdump") and int(b["vmid"]) in SPREAD] == \
        [("/api2/json/nodes/pve1/vzdump", "9000"), ("/api2/json/nodes/pve2/vzdump", "9001")]   # dumped once each
    assert [(p, b["vmid"]) for p, b in sent if "archive" in b] == \
        [("/api2/json/nodes/pve2/qemu", "209000"), ("/api2/json/nodes/pve1/qemu", "109001")]  # restored once each
    assert [p for p, b in sent if b.get("vmid") == "9000"] == ["/api2/json/nodes/pve1/qemu", "/api2/json/nodes/pve1/vzdump"]
    assert "vm9000 copy to pve2 as template 209000 (its children there clone it)" in co.first.output
    assert "vm1001 full clone of vm9001@docker-golden (its copy VM 109001 on pve1)" in co.first.output
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0 and "nothing to do" in result.output, result.output
    assert [(m, p) for m, p, _ in co.pve.requests[mark:]] == [("GET", "/api2/json/cluster/resources")]


def test_status_shows_a_vm_layers_copies(spread: ClusterCheckout):
    from phoenix.cli import status

    from ..core.test_status import status_rows

    rows = {r["task"]: r for r in status_rows(spread)}
    assert rows["vm209000"]["copy_of"] == "vm9000" and rows["vm209000"]["node"] == "pve2", rows["vm209000"]
    assert rows["vm109001"]["copy_of"] == "vm9001" and rows["vm109001"]["up_to_date"], rows["vm109001"]
    assert rows["vm209000"]["kind"] == "vm"
    line = next(x for x in status.render(list(rows.values()), as_json=False).splitlines() if x.startswith("vm109001 "))
    assert "copy of vm9001" in line and "pve1" in line, line


def test_a_change_of_the_template_rebakes_it_once_and_replaces_its_copy_and_clones(spread: ClusterCheckout):
    co = spread
    old = layer(co.pve.vm(209000))
    edit_vm(co, 9000, features=["base_setup"])
    plan = co.doit("plan", "--steps")
    assert plan.rc == 0 and "copy to pve2 as template 209000" in plan.output, plan.output
    assert "(its copy VM 109001 on pve1): POST /nodes/pve1/qemu/109001/clone  newid=1001" in plan.output  # each on its
    assert "full clone of vm9001@docker-golden: POST /nodes/pve2/qemu/9001/clone  newid=1002" in plan.output  # member
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0, result.output
    assert {k: v for k, v in result.outcomes().items() if v != "up-to-date"} == \
        {"vm9000": "built", "vm9001": "built", "vm1001": "built", "vm1002": "built"}
    writes = co.writes(mark)
    assert [p for p, b in posts(co, mark) if b.get("vmid") == "9000" and "archive" not in b] == \
        ["/api2/json/nodes/pve1/qemu", "/api2/json/nodes/pve1/vzdump"]                 # baked once, dumped once
    gone = [p for m, p in writes if m == "DELETE" and "/qemu/" in p]
    assert gone.count("/api2/json/nodes/pve2/qemu/209000") == 1 and gone.count("/api2/json/nodes/pve2/qemu/9001") == 1
    assert gone.index("/api2/json/nodes/pve2/qemu/9001") < gone.index("/api2/json/nodes/pve2/qemu/209000")  # its clone first
    assert "/api2/json/nodes/pve1/qemu/109001" in gone                                 # 9001 rebaked: its copy too
    assert layer(co.pve.vm(209000)) == layer(co.pve.vm(9000)) != old and co.pve.vm(209000).template
    assert clones(co, mark)[9001][0] == "/api2/json/nodes/pve2/qemu/209000/clone"   # the child from the new copy
    mark = co.mark()
    assert co.doit().rc == 0 and len(co.pve.requests) - mark == 1


def test_a_copy_deleted_by_hand_is_made_again_without_rebaking_its_layer(spread: ClusterCheckout):
    co = spread
    built = layer(co.pve.vm(9001))
    co.pve.vms.remove(co.pve.vm(109001))                # `qm destroy 109001` on pve1 by hand
    mark = co.mark()
    assert co.doit().rc == 0 and len(co.pve.requests) - mark == 1   # nothing needs it until a clone of it is built
    co.pve.vms.remove(co.pve.vm(1001))                  # and its clone
    plan = co.doit("plan")
    assert "vm9001  update: no copy on pve1 yet (its children there clone it)" in plan.output, plan.output
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0, result.output
    assert {k: v for k, v in result.outcomes().items() if v != "up-to-date"} == {"vm9001": "updated", "vm1001": "built"}
    assert co.pve.vm(109001).node == "pve1" and layer(co.pve.vm(109001)) == layer(co.pve.vm(9001)) == built
    assert "docker-golden" in co.pve.vm(109001).snapshots
    assert not any(p.endswith(("/qemu/9001", "/qemu/9000")) for _, p in co.writes(mark))   # the layers stay
    assert clones(co, mark)[1001][0] == "/api2/json/nodes/pve1/qemu/109001/clone"
    mark = co.mark()
    assert co.doit().rc == 0 and len(co.pve.requests) - mark == 1


def test_a_copy_that_cannot_be_made_stops_the_rebuild_before_any_write(spread: ClusterCheckout):
    co = spread
    store = co.pve.storages["local"]                  # the backup storage no longer takes backups
    store["content"] = ",".join(c for c in str(store.get("content")).split(",") if c != "backup")
    edit_vm(co, 9000, features=["base_setup"])
    mark = co.mark()
    result = co.doit()
    assert result.rc == 1 and "Traceback" not in result.output, result.output
    assert ("vm9000 is copied to pve2 through a backup on pve1's storage local, which does not take 'backup' "
            "content") in result.output
    assert co.writes(mark) == [] and co.pve.vm(209000) is not None and co.pve.vm(9001) is not None


def test_a_linked_clone_of_a_template_on_shared_storage_on_another_member_clones_its_copy(tmp_path: Path):
    with cluster_audited(vm_cluster(tmp_path / "phoenix", "ceph", {9000: "pve1", 9001: "pve2"})) as co:
        result = co.doit()
        assert result.rc == 0, result.output
        copy = co.pve.vm(209000)                       # Proxmox makes no linked clone across: a copy on pve2, on ceph
        assert copy is not None and copy.node == "pve2" and copy.template
        assert str(copy.config["scsi0"]).startswith("ceph:") and layer(copy) == layer(co.pve.vm(9000))
        assert clones(co)[9001][0] == "/api2/json/nodes/pve2/qemu/209000/clone"
        mark = co.mark()
        assert co.doit().rc == 0 and len(co.pve.requests) - mark == 1


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


def test_vm_layers_restored_from_the_artifact_store_are_copied_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from phoenix.artifacts.store import ENV

    monkeypatch.setenv(ENV, str(tmp_path / "artifacts"))
    with cluster_audited(vm_cluster(tmp_path / "first", None, SPREAD)) as first:
        assert first.doit().rc == 0
        assert first.doit("export", "vm9001").rc == 0                  # 9000 and 9001 into the store
    with cluster_audited(vm_cluster(tmp_path / "fresh", None, SPREAD)) as co:
        result = co.doit()
        assert result.rc == 0, result.output
        assert {k: v for k, v in result.outcomes().items() if k.startswith("vm")} == \
            {"vm9000": "restored", "vm9001": "restored", "vm1001": "built", "vm1002": "built"}
        for layer_vmid, copy_vmid, node in ((9000, 209000, "pve2"), (9001, 109001, "pve1")):
            copy = co.pve.vm(copy_vmid)
            assert copy is not None and copy.node == node and layer(copy) == layer(co.pve.vm(layer_vmid)), copy_vmid
        assert co.pve.vm(209000).template and "docker-golden" in co.pve.vm(109001).snapshots
        assert clones(co)[1001][0] == "/api2/json/nodes/pve1/qemu/109001/clone"
        mark = co.mark()
        assert co.doit().rc == 0 and len(co.pve.requests) - mark == 1


def test_a_layer_that_cannot_be_copied_is_refused_before_any_write(tmp_path: Path):
    with cluster_audited(vm_cluster(tmp_path / "phoenix", None, SPREAD)) as co:
        path = co.root / "etc" / "phoenix_vm_configs.json"
        data = json.loads(path.read_text())
        for vm in data["virtual_machines"]:             # the golden image's copy on pve1 would need VMID 1 * 100000 + N
            if vm["vm_id"] == 9001:
                vm["vm_id"] = 150001
            if vm.get("clone_from_vmid") == 9001:
                vm["clone_from_vmid"] = 150001
        path.write_text(json.dumps(data))
        mark = co.mark()
        result = co.doit()
        assert result.rc == 1 and "Traceback" not in result.output, result.output
        assert ("VM 1001 is placed on pve1 and its parent VM 150001 is on pve2, but it cannot be copied here: a layer "
                "copied to another node needs a VMID below 100000 (it has 150001). Set node on VM 1001 to its "
                "parent's") in result.output
        assert "Nothing was changed on the host" in result.output and co.writes(mark) == []
