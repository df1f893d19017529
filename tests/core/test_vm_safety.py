"""VM rebuilds validate before they destroy, and VM service faults fail one VM, not the estate (simulated host,
fakepve over HTTPS): a missing boot storage or bridge, a node whose snippets cannot be written, a guest agent that
never answers, a cloud-init that never finishes, a 5xx on the import, a full snippet storage. Each asserts what the
node has afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phoenix.facts.guests import parse_record

from .conftest import NODE, Checkout, run_doit

CTS = ("ct900", "ct901", "ct902", "ct910", "ct920", "ct950")
VMS = ("vm9000", "vm9001", "vm1001", "vm1002")


def edit_vm(co: Checkout, vmid: int, **changes: object) -> None:
    path = co.root / "etc" / "phoenix_vm_configs.json"
    data = json.loads(path.read_text())
    for vm in data["virtual_machines"]:
        if vm["vm_id"] == vmid:
            vm.update(changes)
    path.write_text(json.dumps(data, indent=2))


def edit_hypervisor(co: Checkout, **changes: object) -> None:
    path = co.root / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2))


def identity(co: Checkout, vmid: int) -> str | None:
    vm = co.pve.vm(vmid)
    return None if vm is None else parse_record(vm.config.get("description")).get("identity")


def fault(co: Checkout, **faults: object) -> None:
    """The simulated node's faults (phoenix.transport.simulated): none when faults is empty."""
    path = co.cache / "sim" / "faults.json"
    if faults:
        path.write_text(json.dumps(faults))
    else:
        path.unlink(missing_ok=True)


@pytest.fixture
def vms_built(vm_checkout: Checkout) -> Checkout:
    result = vm_checkout.doit()
    assert result.rc == 0, result.output
    return vm_checkout


def snippets(co: Checkout) -> set[str]:
    where = co.cache / "sim" / "storage" / "local" / "snippets"
    return {p.name for p in where.iterdir()} if where.is_dir() else set()


# ---------------------------------------------------------------- 1. validate before destroy


@pytest.mark.parametrize(("storage", "said"), [
    ("nosuch-lvm", "boot_disk_storage nosuch-lvm does not exist on node pve1"),
    ("local", "boot_disk_storage local does not allow 'images' content"),
])
def test_a_bad_boot_storage_stops_the_vm_rebuild_before_anything_is_destroyed(vms_built: Checkout, storage, said):
    co = vms_built
    before, config = identity(co, 1002), dict(co.pve.vm(1002).config)
    edit_vm(co, 1002, boot_disk_storage=storage)
    mark = co.mark()
    result = co.doit()
    assert result.rc == 1
    assert said in result.output and "VM 1002" in result.output and "set boot_disk_storage" in result.output
    assert "Traceback" not in result.output
    assert co.writes(mark) == [] and co.lease_writes(mark) == []  # stopped before the lease: nothing written at all
    vm = co.pve.vm(1002)
    assert vm is not None and vm.status == "running" and identity(co, 1002) == before and vm.config == config
    edit_vm(co, 1002, boot_disk_storage="local-lvm")  # fixed: the estate is as it was, nothing to do
    again = co.doit()
    assert again.rc == 0 and again.outcomes()["vm1002"] == "up-to-date", again.output


def test_a_boot_storage_on_a_linked_clone_other_than_its_templates_is_refused_before_any_request(tmp_path: Path,
                                                                                                 capsys):
    co = Checkout(tmp_path / "phoenix", vms=True)
    try:
        edit_vm(co, 9001, boot_disk_storage="nosuch-lvm")  # 9001 is a linked clone of template 9000 (local-lvm)
        with pytest.raises(SystemExit) as stopped:  # setup() refuses a bad config before doit starts
            run_doit(co.root, ())
        said = capsys.readouterr().err
        assert stopped.value.code == 2
        assert "phoenix_vm_configs.json: virtual_machines[1].boot_disk_storage" in said, said
        assert "linked clone of template 9000" in said and "'local-lvm'" in said and "Traceback" not in said
        assert co.sim.pve is None  # the simulator never started: nothing was asked of a host
    finally:
        co.stop_sim()


def test_an_unfetchable_cloud_image_stops_the_template_rebake_before_anything_is_destroyed(vms_built: Checkout):
    co = vms_built
    co.pve.storages["local"]["volumes"].pop("import/noble-server-cloudimg-amd64.qcow2")
    co.pve.fail("GET", f"{NODE.removeprefix('/api2/json')}/query-url-metadata", 500,
                "Can't connect to cloud-images.ubuntu.com:443 (Name or service not known)")
    assert co.doit("forget", "vm9000").rc == 0
    before = {v: identity(co, v) for v in (9000, 9001, 1001, 1002)}
    mark = co.mark()
    result = co.doit()
    assert result.rc == 1
    assert "VM 9000: cloud image local:import/noble-server-cloudimg-amd64.qcow2 is not in storage local" in result.output
    assert "cannot fetch it" in result.output and "Name or service not known" in result.output
    assert co.writes(mark) == []
    assert {v: identity(co, v) for v in before} == before  # the template and its clones all stand


# ---------------------------------------------------------------- 3. bridges


def test_a_vm_on_a_bridge_the_node_lacks_is_refused_before_any_write(vms_built: Checkout):
    co = vms_built
    net0 = co.pve.vm(1002).config["net0"]
    edit_vm(co, 1002, network_bridge="vmbr9")
    mark = co.mark()
    result = co.doit()
    assert result.rc == 1, result.output
    assert "VM 1002 (vm1002): its network device is on bridge vmbr9, which does not exist on node pve1" in result.output
    assert "bridges there: vmbr0" in result.output
    assert co.writes(mark) == [] and co.pve.vm(1002).config["net0"] == net0
    # the node's network was read once, for the run's checks
    assert [p for m, p, _ in co.pve.requests[mark:] if p.endswith("/network")] == [f"{NODE}/network"]
    edit_vm(co, 1002, network_bridge="vmbr0")
    mark = co.mark()
    noop = co.doit()
    assert noop.rc == 0 and "nothing to do" in noop.output
    assert [(m, p) for m, p, _ in co.pve.requests[mark:]] == [("GET", "/api2/json/cluster/resources")]


def test_a_container_on_a_missing_bridge_is_refused_on_a_cold_build_and_nothing_is_built(checkout: Checkout):
    co = checkout
    data = co.lxc_config()
    data["lxc_configs"]["950"]["network_config"]["bridge"] = "vmbr9"
    co.write_lxc_config(data)
    result = co.doit()
    assert result.rc == 1
    assert "CT 950 (ct950): its network device is on bridge vmbr9" in result.output
    assert co.writes() == [] and co.pve.ct(900) is None


def test_under_continue_a_guest_refused_by_its_checks_stops_alone_and_the_rest_builds(checkout: Checkout):
    """doit -c: the checks before the first write refuse 950 (its bridge is not on the node); the rest of the estate
    builds, 950 is never created, and the run exits 1 naming it. Without -c the same config writes nothing (above)."""
    co = checkout
    data = co.lxc_config()
    data["lxc_configs"]["950"]["network_config"]["bridge"] = "vmbr9"
    co.write_lxc_config(data)
    result = co.doit("-c")
    assert result.rc == 1, result.output
    assert result.output.count("CT 950 (ct950): its network device is on bridge vmbr9") == 1, result.output
    outcomes = result.outcomes()
    assert outcomes["ct950"] == "failed" and {outcomes[k] for k in ("ct900", "ct901", "ct902", "ct920", "ct910")} == {
        "built"}, outcomes
    assert co.pve.ct(950) is None and co.pve.ct(920) is not None
    assert not [p for _, p in co.writes() if "/950" in p]


def test_a_bridge_host_network_makes_in_the_same_run_counts_as_there(vm_checkout: Checkout):
    co = vm_checkout
    edit_hypervisor(co, host={"network": {"bridges": [{"name": "vmbr9", "ports": [], "vlan_aware": True}]}})
    edit_vm(co, 1002, network_bridge="vmbr9")
    result = co.doit()
    assert result.rc == 0, result.output
    assert "bridge=vmbr9" in co.pve.vm(1002).config["net0"]
    assert co.pve.node_state["network"]["vmbr9"]["type"] == "bridge"  # made by host:network before the VM


def test_the_bridge_check_reads_vlan_awareness():
    from phoenix.kinds.bridges import parse, problems_of

    assert parse("virtio,bridge=vmbr1,tag=20") == ("vmbr1", 20)
    assert problems_of("VM 1", "virtio,bridge=vmbr1,tag=20", {"vmbr1": True}, "pve1") == []
    found = problems_of("VM 1", "virtio,bridge=vmbr1,tag=20", {"vmbr1": False, "vmbr0": False}, "pve1")
    assert len(found) == 1 and "VLAN tag 20 on bridge vmbr1, which is not VLAN-aware" in found[0]
    assert problems_of("CT 9", "name=eth0,bridge=vmbr0,ip=dhcp", {"vmbr0": False}, "pve1") == []


# ---------------------------------------------------------------- 2. snippets before destroy


def test_a_node_without_sftp_stops_a_forced_vm_rebuild_before_anything_is_destroyed(vms_built: Checkout):
    co = vms_built
    before = identity(co, 1001)
    assert co.doit("forget", "vm1001").rc == 0
    fault(co, no_sftp=True)
    mark = co.mark()
    result = co.doit()
    assert result.rc == 1
    assert "VM 1001: cannot write its cloud-init snippets into /var/lib/vz/snippets" in result.output
    assert "cannot start SFTP" in result.output
    assert co.writes(mark) == []
    assert co.pve.vm(1001).status == "running" and identity(co, 1001) == before
    fault(co)
    again = co.doit()  # the next run does what was asked
    assert again.rc == 0 and again.outcomes()["vm1001"] == "built", again.output
    assert co.pve.vm(1001).status == "running" and "phx-building" not in co.pve.vm(1001).config["tags"]


def test_a_rebuild_writes_its_snippets_before_it_destroys_and_a_full_storage_leaves_the_vm_standing(vms_built: Checkout):
    co = vms_built
    old = {n for n in snippets(co) if n.startswith("phoenix-1001-")}
    config = dict(co.pve.vm(1001).config)
    assert co.doit("forget", "vm1001").rc == 0
    fault(co, full_storages=["local"])
    mark = co.mark()
    result = co.doit("--continue")
    assert result.rc == 1
    assert "vm1001 write cloud-init snippets" in result.output and "No space left on device" in result.output
    assert result.outcomes()["vm1001"] == "failed" and result.outcomes()["vm1002"] == "up-to-date"
    assert [w for w in co.writes(mark) if "/qemu/" in w[1]] == []   # nothing destroyed, nothing cloned
    assert co.pve.vm(1001).config == config and co.pve.vm(1001).status == "running"
    assert old <= snippets(co)  # the running VM's snippets are all there
    fault(co)
    mark = co.mark()
    again = co.doit()
    assert again.rc == 0 and again.outcomes()["vm1001"] == "built", again.output
    # the new snippets went up before the old VM was destroyed, the old ones were removed after it
    lines = [line for line in again.output.splitlines() if line.startswith("vm1001")]
    order = [next(i for i, line in enumerate(lines) if key in line)
             for key in ("write cloud-init snippets", "destroy VM 1001", "older snippets", "full clone")]
    assert order == sorted(order), lines
    now = {n for n in snippets(co) if n.startswith("phoenix-1001-")}
    named = {p.split("local:snippets/")[1] for p in co.pve.vm(1001).config["cicustom"].split(",")}
    assert now == named and not (old - named) & now


def test_put_before_destroy_is_what_the_steps_say(vms_built: Checkout):
    co = vms_built
    assert co.doit("forget", "vm1001").rc == 0
    plan = co.doit("plan", "--steps", "vm1001")
    assert plan.rc == 0, plan.output
    text = plan.output
    assert text.index("write cloud-init snippets") < text.index("destroy VM 1001") < text.index("older snippets")


# ---------------------------------------------------------------- 4. VM service faults


def rest_built(result, *, failed: str, blocked: tuple[str, ...] = ()) -> None:
    outcomes = result.outcomes()
    assert outcomes[failed] == "failed", result.output
    for key in blocked:
        assert outcomes.get(key) != "built", result.output
    for key in (*CTS, *VMS):
        if key != failed and key not in blocked:
            assert outcomes[key] == "built", (key, result.output)


def converges(co: Checkout, rebuilt: str) -> None:
    again = co.doit()
    assert again.rc == 0, again.output
    assert again.outcomes()[rebuilt] == "built"
    mark = co.mark()
    noop = co.doit()
    assert noop.rc == 0 and "nothing to do" in noop.output, noop.output
    assert [(m, p) for m, p, _ in co.pve.requests[mark:]] == [("GET", "/api2/json/cluster/resources")]


def test_a_guest_agent_that_never_answers_fails_that_vm_only_and_the_next_run_recovers(vm_checkout: Checkout,
                                                                                      monkeypatch):
    co = vm_checkout
    monkeypatch.setattr("phoenix.kinds.vm.steps.AGENT_TIMEOUT_S", 1.0)
    co.pve.fail("POST", f"{NODE.removeprefix('/api2/json')}/qemu/1002/agent/ping", 500,
                "QEMU guest agent is not running")
    result = co.doit("--continue")
    assert result.rc == 1
    assert "VM 1002: the guest agent did not answer within 1s (" in result.output
    assert "QEMU guest agent is not running" in result.output and "qemu-guest-agent" in result.output
    assert "Traceback" not in result.output
    rest_built(result, failed="vm1002")
    assert "phx-building" in co.pve.vm(1002).config["tags"]  # not recorded as built
    co.pve.failures.clear()
    converges(co, "vm1002")


def test_a_cloud_init_that_never_finishes_fails_that_vm_only_and_the_next_run_recovers(vm_checkout: Checkout,
                                                                                      monkeypatch):
    co = vm_checkout
    monkeypatch.setattr("phoenix.kinds.vm.steps.CLOUD_INIT_TIMEOUT_S", 1.0)
    co.sim.agent_answers[1001] = {"exec": {"cloud-init status --wait": {"exited": False}}}
    result = co.doit("--continue")
    assert result.rc == 1
    assert "vm1001: wait for cloud-init timed out after 1s in VM 1001" in result.output
    rest_built(result, failed="vm1001")
    assert "phx-building" in co.pve.vm(1001).config["tags"]
    co.sim.agent_answers.clear()
    co.pve.vm(1001).agent = {}  # the agent as a booted guest's answers
    converges(co, "vm1001")


def test_a_5xx_on_the_cloud_image_import_fails_the_template_and_what_is_cloned_from_it_only(vm_checkout: Checkout):
    co = vm_checkout
    co.pve.fail("POST", f"{NODE.removeprefix('/api2/json')}/qemu", 500,
                "import failed - qemu-img: Could not open '/var/lib/vz/import/noble-server-cloudimg-amd64.qcow2'",
                times=1)
    result = co.doit("--continue")
    assert result.rc == 1  # a task failed (what waits on it is left undone): not 2, which is bad config
    assert "vm9000" in result.output and "qemu-img: Could not open" in result.output
    assert "Traceback" not in result.output
    outcomes = result.outcomes()
    assert outcomes["vm9000"] == "failed"
    assert all(outcomes[k] == "built" for k in CTS), result.output
    assert all(co.pve.vm(v) is None for v in (9001, 1001, 1002))
    converges(co, "vm9000")


def test_a_full_snippet_storage_on_a_cold_build_fails_the_vms_and_leaves_the_containers_built(vm_checkout: Checkout):
    co = vm_checkout
    co.pve  # noqa: B018 - the simulator's state dir exists
    fault(co, full_storages=["local"])
    result = co.doit("--continue")
    assert result.rc == 1  # a task failed (what waits on it is left undone): not 2, which is bad config
    assert "No space left on device" in result.output and "TaskFailed - taskid:vm9000" in result.output
    outcomes = result.outcomes()
    assert outcomes["vm9000"] == "failed" and all(outcomes[k] == "built" for k in CTS)
    assert all(co.pve.vm(v) is None for v in (9000, 9001, 1001, 1002))  # nothing half-made
    fault(co)
    converges(co, "vm9000")


def test_faults_file_is_only_the_simulators(tmp_path: Path):
    from phoenix.transport.simulated import SimulatedNode

    node = SimulatedNode(tmp_path / "runs.jsonl")
    assert not node.full("local")
    (tmp_path / "faults.json").write_text("not json")
    assert not node.full("local")  # a damaged file is no fault


def test_a_failed_import_task_shows_its_own_log_and_only_the_vms_wait(vm_checkout: Checkout):
    co = vm_checkout
    co.pve.fail("POST", f"{NODE.removeprefix('/api2/json')}/storage/local/download-url",
                error="no_decompression_method_found", times=1)  # raised inside the PVE worker: a failed task
    result = co.doit("--continue")
    assert result.rc == 1  # a task failed (what waits on it is left undone): not 2, which is bad config
    assert "TaskFailed - taskid:vm9000" in result.output
    assert "no decompression method found" in result.output and "task log" in result.output, result.output
    assert "Traceback" not in result.output
    outcomes = result.outcomes()
    assert outcomes["vm9000"] == "failed" and all(outcomes[k] == "built" for k in CTS)
    assert all(co.pve.vm(v) is None for v in (9000, 9001, 1001, 1002))
    assert "import/noble-server-cloudimg-amd64.qcow2" not in co.pve.storages["local"].get("volumes", {})
    converges(co, "vm9000")
