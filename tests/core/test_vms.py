"""VMs as layers on the simulated host (fakepve over HTTPS): the example estate's cloud-image template, golden
image and clones, built with doit; incremental rebuilds from cloud-init templates and feature scripts; what a real
node refuses, audited in fakepve's request log after every test (conftest.audit)."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from phoenix.facts.guests import parse_record

from .conftest import NODE, Checkout, run_doit
from .pve_audit import refused

CTS = ("ct900", "ct901", "ct902", "ct910", "ct920", "ct950")
VMS = ("vm9000", "vm9001", "vm1001", "vm1002")


def snippets(co: Checkout) -> set[str]:
    where = co.cache / "sim" / "storage" / "local" / "snippets"
    return {p.name for p in where.iterdir()} if where.is_dir() else set()


def changes(result) -> dict[str, str]:
    return {k: v for k, v in result.outcomes().items() if v != "up-to-date"}


def test_example_vms_build_end_to_end_and_a_second_run_is_one_request(vm_checkout: Checkout):
    co = vm_checkout
    first = co.doit()
    assert first.rc == 0, first.output
    assert {k: v for k, v in first.outcomes().items() if k.startswith("vm")} == dict.fromkeys(VMS, "built")
    pve = co.pve
    template, golden, portainer = pve.vm(9000), pve.vm(9001), pve.vm(1001)
    assert template.template and "import-from=local:import/noble-server-cloudimg-amd64.qcow2" in template.config["scsi0"]
    assert template.config["serial0"] == "socket" and template.config["agent"] == "enabled=1"
    create = next(parse_qs(b.decode()) for m, p, b in pve.requests if m == "POST" and p == f"{NODE}/qemu")
    assert create["ide2"] == ["local-lvm:cloudinit"]  # fakepve names the drive vm-N-disk-0; PVE vm-N-cloudinit
    assert create["scsi0"] == ["local-lvm:0,import-from=local:import/noble-server-cloudimg-amd64.qcow2"]
    assert "docker-golden" in golden.snapshots and golden.status == "stopped"
    assert portainer.status == "running"
    record = parse_record(portainer.config["description"])
    assert record["layer"] == "vm1001" and record["inputs"]["cloudinit:user-data"]
    # the snippets the VMs name are in the (simulated) snippets storage, named by content
    on_storage = snippets(co)
    for vm in (template, golden, portainer, pve.vm(1002)):
        named = {part.split("local:snippets/")[1] for part in vm.config["cicustom"].split(",")}
        assert named <= on_storage and all(n.startswith(f"phoenix-{vm.vmid}-") for n in named)
    # features ran through the agent with an argv list, the files written first
    asked = [cmd for cmd, _ in golden.agent_requests]
    assert asked.count("file-write") >= 4 and "exec" in asked
    # docker.sh's optional secret: written 0600 into a 0700 directory, removed before the golden image is kept
    secret = (co.root / "etc" / "phoenix_docker_token.conf").read_text().strip()
    writes = [a["file"] for c, a in golden.agent_requests if c == "file-write"]
    execs = [a["command"] for c, a in golden.agent_requests if c == "exec"]
    assert "/var/lib/phoenix/secrets/docker_token" in writes
    assert ["install", "-d", "-m", "0700", "/var/lib/phoenix/secrets"] in execs
    assert execs[-1] == ["rm", "-rf", "--", "/var/lib/phoenix/secrets"]
    assert not any(secret in " ".join(cmd) for cmd in execs)
    assert secret not in first.output and secret not in (co.cache / "logs" / "vm9001.log").read_text()
    mark = co.mark()
    second = co.doit()
    assert second.rc == 0 and "nothing to do" in second.output, second.output
    assert second.outcomes() == dict.fromkeys((*CTS, *VMS), "up-to-date")
    assert [(m, p) for m, p, _ in pve.requests[mark:]] == [("GET", "/api2/json/cluster/resources")]


def test_a_cloudinit_template_edit_rebuilds_exactly_the_vms_whose_snippet_changed(vm_checkout: Checkout):
    co = vm_checkout
    assert co.doit().rc == 0
    old = {n for n in snippets(co) if n.startswith("phoenix-1002-user-")}
    path = co.root / "cloudinit" / "user-data.yml.j2"
    path.write_text(path.read_text() + "{% if vm.id == 1002 %}ntp: {enabled: true}\n{% endif %}")
    plan = co.doit("plan")
    assert "vm1002  rebuild: cloudinit:user-data changed" in plan.output, plan.output
    for other in ("vm9000", "vm9001", "vm1001", *CTS):
        assert f"{other:<7} up-to-date" in plan.output, plan.output
    result = co.doit()
    assert result.rc == 0, result.output
    assert changes(result) == {"vm1002": "built"}
    new = {n for n in snippets(co) if n.startswith("phoenix-1002-user-")}
    assert len(new) == 1 and not new & old  # the old snippet was removed, the new one is named by its content
    assert "ntp" in (co.cache / "sim" / "storage" / "local" / "snippets" / new.pop()).read_text()


def test_a_feature_edit_rebuilds_the_layers_that_run_it_and_their_clones(vm_checkout: Checkout):
    co = vm_checkout
    assert co.doit().rc == 0
    script = co.root / "images" / "features" / "docker.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    result = co.doit()
    assert result.rc == 0, result.output
    assert changes(result) == {"ct902": "built", "ct910": "built", "vm9001": "built", "vm1001": "built",
                               "vm1002": "built"}


def test_forget_rebuilds_the_golden_image_and_its_clones(vm_checkout: Checkout):
    co = vm_checkout
    assert co.doit().rc == 0
    assert co.doit("forget", "vm9001").rc == 0
    result = co.doit()
    assert result.rc == 0, result.output
    assert changes(result) == {"vm9001": "built", "vm1001": "built", "vm1002": "built"}


def test_a_foreign_template_is_refused_and_nothing_is_written(vm_checkout: Checkout):
    co = vm_checkout
    co.pve.add_vm(9000, "someones-template", template=True, config={"scsi0": "local-lvm:base-9000-disk-0"})
    mark = co.mark()
    result = co.doit("vm1001")
    assert result.rc != 0
    assert ("VMID 9000 holds a template that Phoenix did not build (no 'phoenix' tag and record); Phoenix will not "
            "replace or clone it: give vm9000 another vm_id, or move or remove VMID 9000 yourself, then rerun"
            in result.output), result.output  # the README: refused "with what to do"
    assert "Traceback" not in result.output
    assert [w for w in co.writes(mark) if "/qemu" in w[1]] == []
    assert co.pve.vm(9000).name == "someones-template"


def test_cloudinit_task_renders_and_checks_without_touching_a_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    co = Checkout(tmp_path / "phoenix", vms=True)
    try:
        result = run_doit(co.root, ("cloudinit:1001",))
        assert result.rc == 0, result.output
        out = co.cache / "cloudinit" / "1001"
        assert sorted(p.name for p in out.iterdir()) == ["meta-data", "network-config", "user-data"]
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == dict.fromkeys(
            ("meta-data", "network-config", "user-data"), 0o600)  # the README: "written 0600"
        assert (out / "user-data").read_text().startswith("#cloud-config\n")
        assert co.sim.pve is None and "pve" not in result.run.__dict__  # no simulator, no API
        listed = run_doit(co.root, ("list",)).output  # a task of its own per VM, saying what it is; no group task
        assert re.search(r"^cloudinit:1001\s+render and check VM 1001's cloud-init files$", listed, re.M), listed
        assert not re.search(r"^cloudinit\s", listed, re.M), listed
        again = run_doit(co.root, ("cloudinit:1001",))
        assert re.search(r"^-- \[\d+/\d+\] cloudinit:1001: up to date$", again.output, re.M), again.output
        assert "wrote" not in again.output, again.output
        bad = co.root / "cloudinit" / "network-config.yml.j2"
        bad.write_text(bad.read_text().replace("0.0.0.0/0", "default"))
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:  # refused with the config (exit 2), before doit runs anything
            run_doit(co.root, ("cloudinit:1001",))
        said = capsys.readouterr().err
        assert info.value.code == 2 and "Debian 12's cloud-init (22.4) refuses `to: default`" in said, said
        assert f"{bad}: line " in said and "Traceback" not in said, said
    finally:
        co.stop_sim()


def test_the_audit_catches_what_a_real_node_refuses():
    q = f"{NODE}/qemu"
    bad = [("POST", q, b"vmid=9000&scsi0=local-lvm%3A0%2Cimport-from%3D%2Fvar%2Flib%2Fvz%2Fimport%2Fx.qcow2"),
           ("PUT", f"{q}/9000/config", b"args=-cpu+host"),
           ("PUT", f"{q}/9000/config", b"hostpci0=0000%3A01%3A00"),
           ("PUT", f"{q}/9000/config", b"cicustom=user%3Dlocal%3Asnippets%2Fa.yml%2Cnetwork%3Dlocal%3Aiso%2Fb.iso"),
           ("PUT", f"{q}/9000/config", b"cicustom=users%3Dlocal%3Asnippets%2Fa.yml"),
           ("POST", f"{q}/9000/agent/exec", b"command=cloud-init+status+--wait")]
    good = [("POST", q, b"vmid=9000&scsi0=local-lvm%3A0%2Cimport-from%3Dlocal%3Aimport%2Fnoble.qcow2"),
            ("PUT", f"{q}/9000/config", b"cicustom=user%3Dlocal%3Asnippets%2Fa.yml%2Cmeta%3Dlocal%3Asnippets%2Fm.yml"),
            ("POST", f"{q}/9000/agent/exec", b"command=cloud-init&command=status&command=--wait")]

    class Vm:
        vmid = 1001
        agent_requests = [("exec", {"command": ["true"]}), ("exec-status", {"pid": 7}), ("exec-status", {"pid": 7})]

    found = refused(bad + good, [Vm()])
    assert len(found) == 7, json.dumps(found, indent=1)
    assert any("import-from needs" in f for f in found) and any("args may be set by root@pam" in f for f in found)
    assert any("hostpci0" in f for f in found) and any("not a snippet volume" in f for f in found)
    assert any("'users'" in f for f in found) and any("is a string" in f for f in found)
    assert any("pid 7 polled 2 times" in f for f in found)
    assert refused(good) == []


def test_a_storage_without_snippets_content_stops_the_build_before_any_write(vm_checkout: Checkout):
    co = vm_checkout
    co.pve.storages["local"]["content"] = "iso,vztmpl,backup,import"
    mark = co.mark()
    result = co.doit("vm9000")
    assert result.rc != 0 and "Traceback" not in result.output
    assert "storage local does not allow 'snippets' content" in result.output, result.output
    assert "pvesm set local --content iso,vztmpl,backup,import,snippets" in result.output, result.output
    assert co.writes(mark) == [] and snippets(co) == set()


def test_the_simulator_refuses_to_start_a_vm_whose_snippet_is_missing(vm_checkout: Checkout):
    from phoenix.errors import PhoenixError
    from phoenix.pve.client import Pve

    co = vm_checkout
    assert co.doit("vm1001").rc == 0
    pve = Pve.of(co.sim.endpoint)
    pve.run("POST", "nodes/pve1/qemu/1001/status/stop")
    for name in snippets(co):
        if name.startswith("phoenix-1001-user-"):
            (co.cache / "sim" / "storage" / "local" / "snippets" / name).unlink()
    try:
        pve.run("POST", "nodes/pve1/qemu/1001/status/start")
    except PhoenixError as e:
        assert "snippets/phoenix-1001-user-" in str(e) and "does not exist" in str(e), str(e)
    else:
        raise AssertionError("the simulator started a VM whose user-data snippet is missing")
    assert co.pve.vm(1001).status == "stopped"


def test_cloud_init_degraded_is_a_warning_and_an_error_shows_its_log(vm_checkout: Checkout):
    co = vm_checkout
    co.pve  # noqa: B018 - the simulator is up, so the canned agent answers apply when the VMs start
    co.sim.agent_answers[1001] = {"exec": {"cloud-init status --wait": {"exitcode": 2, "out-data": "status: degraded\n"}}}
    co.sim.agent_answers[1002] = {"exec": {
        "cloud-init status --wait": {"exitcode": 1, "out-data": "status: error\n"},
        "tail -n 40 /var/log/cloud-init-output.log": {"exitcode": 0, "out-data": "E: Package 'chrony' has no candidate\n"}}}
    result = co.doit()
    assert result.rc != 0 and "Traceback" not in result.output
    outcomes = result.outcomes()
    assert outcomes["vm1001"] == "built" and outcomes["vm1002"] == "failed", result.output
    assert "vm1001: WARNING: wait for cloud-init exited with status 2" in result.output, result.output
    assert "[vm1001] status: degraded" in result.output
    assert "vm1002: wait for cloud-init exited with status 1 in VM 1002" in result.output, result.output
    assert "/var/log/cloud-init-output.log:" in result.output and "E: Package 'chrony'" in result.output
    log = (co.cache / "logs" / "vm1002.log").read_text()
    assert "$ cloud-init status --wait" in log and "status: error" in log


def test_large_files_reach_the_agent_in_parts_within_its_limits(vm_checkout: Checkout):
    import base64

    from phoenix.agent import GuestAgent
    from phoenix.pve.client import Pve

    co = vm_checkout
    assert co.doit("vm1001").rc == 0
    agent = GuestAgent(Pve.of(co.sim.endpoint), "pve1", 1001)
    vm = co.pve.vm(1001)
    before = len(vm.agent_requests)
    data = bytes(range(256)) * 600  # 150 KiB, binary
    agent.write_file("/var/lib/phoenix/big.bin", data)
    asked = vm.agent_requests[before:]
    writes = [a for c, a in asked if c == "file-write"]
    assert len(writes) == 4 and all(len(a["content"]) <= 60 * 1024 for a in writes)  # the README: 60 KiB a call
    assert b"".join(base64.b64decode(a["content"]) for a in writes) == data
    assert [a["file"] for a in writes] == [f"/var/lib/phoenix/big.bin.phx-part{i:04d}" for i in range(4)]
    execs = [a["command"] for c, a in asked if c == "exec"]
    assert execs[-1][:2] == ["/bin/sh", "-c"] and execs[-1][4] == "/var/lib/phoenix/big.bin"
    from phoenix.errors import PhoenixError

    try:
        agent.start(["cat"], input_data=b"x" * (64 * 1024 + 1))
    except PhoenixError as e:
        assert "at most 65536" in str(e)
    else:
        raise AssertionError("input-data over 64 KiB was sent")


def test_a_noop_of_the_mixed_estate_renders_nothing_and_loads_no_config_models(tmp_path: Path):
    """Containers and VMs built; the next `doit` decides from .cache/ and one listing: no Jinja, pydantic or
    jsonschema import, no render, and the cloudinit tasks skipped by doit's own file checks."""
    import os
    import subprocess
    import sys

    from .test_sim import serve, stop

    co = Checkout(tmp_path / "phoenix", vms=True)
    proc = serve(co.cache / "sim")
    try:
        assert co.doit(own_sim=False).rc == 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "doit"], cwd=co.root, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        stop(proc)
    assert done.returncode == 0 and "nothing to do" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "1 API requests" in done.stdout and "wrote" not in done.stdout, done.stdout
    for vmid in (9000, 9001, 1001, 1002):
        assert re.search(rf"^-- \[\d+/\d+\] cloudinit:{vmid}: up to date$", done.stdout, re.M), done.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "phoenix.runtime" in imported
    assert not {"jinja2", "pydantic", "jsonschema", "yaml", "phoenix.cloudinit.render", "phoenix.config.estate"} & imported
    # the served simulator saved the VMs: the next run's own simulator finds them as they were
    again = co.doit()
    try:
        assert again.rc == 0 and set(again.outcomes().values()) == {"up-to-date"}, again.output
        assert co.pve.vm(1001).status == "running" and "docker-golden" in co.pve.vm(9001).snapshots
    finally:
        co.stop_sim()


def test_memory_and_disk_change_in_place(vm_checkout: Checkout):
    co = vm_checkout
    assert co.doit().rc == 0
    path = co.root / "etc" / "phoenix_vm_configs.json"
    data = json.loads(path.read_text())
    data["virtual_machines"][2].update(memory_mb=6144, boot_disk_size_gb=40)
    path.write_text(json.dumps(data))
    plan = co.doit("plan")
    assert "vm1001  update: memory 4096 -> 6144 MB" in plan.output, plan.output
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0 and changes(result) == {"vm1001": "updated"}, result.output
    assert co.pve.vm(1001).config["memory"] in (6144, "6144")
    writes = co.writes(mark)
    assert ("PUT", f"{NODE}/qemu/1001/config") in writes and ("PUT", f"{NODE}/qemu/1001/resize") in writes
    assert not [w for w in writes if w[0] == "DELETE"]
    assert co.doit().outcomes()["vm1001"] == "up-to-date"
    # a tag removed from the config goes; one set by hand stays
    vm = co.pve.vm(1001)
    vm.config["tags"] = vm.config["tags"] + ";by-hand"
    data["virtual_machines"][2]["tags"] = []
    path.write_text(json.dumps(data))
    assert co.doit().outcomes()["vm1001"] == "updated"
    tags = set(co.pve.vm(1001).config["tags"].split(";"))
    assert "by-hand" in tags and "portainer" not in tags


def test_a_bad_vm_config_is_one_clear_message_and_no_request(tmp_path: Path, capsys):
    co = Checkout(tmp_path / "phoenix", vms=True)
    try:
        path = co.root / "etc" / "phoenix_vm_configs.json"
        data = json.loads(path.read_text())
        data["virtual_machines"][3]["memroy_mb"] = 1
        path.write_text(json.dumps(data))
        try:
            result = run_doit(co.root, ())
            output, rc = result.output, result.rc
        except SystemExit as e:  # setup() refuses a bad config before doit starts
            output, rc = "", e.code
        said = output + capsys.readouterr().err
        assert rc not in (0, None)
        assert co.sim.pve is None  # the simulator never started: nothing was asked of a host
        assert "Traceback" not in said
        assert "phoenix_vm_configs.json: virtual_machines[3].memroy_mb: unknown key 'memroy_mb'" in said, said
        assert "nothing on the host was touched" in said
    finally:
        co.stop_sim()


def test_snippets_no_vm_refers_to_are_removed_when_a_vm_is_built(vm_checkout: Checkout):
    co = vm_checkout
    assert co.doit("vm9000").rc == 0
    where = co.cache / "sim" / "storage" / "local" / "snippets"
    (where / "phoenix-4242-user-0123456789ab.yml").write_text("#cloud-config\n")  # a VM long gone
    (where / "hand-made.yml").write_text("#cloud-config\n")                       # not Phoenix's
    assert co.doit().rc == 0
    left = snippets(co)
    assert "phoenix-4242-user-0123456789ab.yml" not in left and "hand-made.yml" in left
    assert {n.split("-")[1] for n in left if n.startswith("phoenix-")} == {"9000", "9001", "1001", "1002"}


def test_a_failed_cloud_image_download_leaves_the_old_vm_layer_standing(vm_checkout: Checkout):
    """The README: nothing is destroyed before the new build can succeed. A new cloud image is downloaded before the
    root VM layer it replaces is destroyed: if the download fails, vm9000 is still there."""
    co = vm_checkout
    assert co.doit().rc == 0
    path = co.root / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    data["cloud_images"]["ubuntu-24.04-cloud"] = {
        "volume": "local:import/noble-server-cloudimg-amd64-2.qcow2",
        "url": "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img"}
    path.write_text(json.dumps(data))
    co.pve.fail("POST", f"{NODE}/storage/local/download-url", 500, "can't connect to cloud-images.ubuntu.com", times=1)
    mark = co.mark()
    result = co.doit()
    assert result.rc == 1 and "cloud-images.ubuntu.com" in result.output, result.output
    assert not [w for w in co.writes(mark) if w[0] == "DELETE"]  # nothing destroyed
    assert co.pve.vm(9000).template
    mark = co.mark()
    result = co.doit()  # the download works again: the VM layers are rebuilt, the download before the destroy
    assert result.rc == 0, result.output
    writes = co.writes(mark)
    assert writes.index(("POST", f"{NODE}/storage/local/download-url")) < writes.index(("DELETE", f"{NODE}/qemu/9000"))


def meta_data(co: Checkout, vmid: int) -> dict:
    import yaml

    cicustom = dict(part.split("=", 1) for part in co.pve.vm(vmid).config["cicustom"].split(","))
    name = cicustom["meta"].split("local:snippets/")[1]
    return yaml.safe_load((co.cache / "sim" / "storage" / "local" / "snippets" / name).read_text())


def test_the_instance_id_is_new_at_each_build_and_kept_by_an_unchanged_vm(vm_checkout: Checkout):
    # the README: instance_id is "phx-<vmid>-<build id>, new at each build, so a rebuilt VM runs cloud-init's
    # per-instance steps again and an unchanged one never does"
    co = vm_checkout
    assert co.doit().rc == 0
    builds = {vmid: parse_record(co.pve.vm(vmid).config["description"])["build"] for vmid in (1001, 1002)}
    before = {vmid: meta_data(co, vmid)["instance-id"] for vmid in (1001, 1002)}
    assert before == {vmid: f"phx-{vmid}-{builds[vmid]}" for vmid in (1001, 1002)}
    assert co.doit("forget", "vm1002").rc == 0
    assert co.doit().rc == 0
    after = {vmid: meta_data(co, vmid)["instance-id"] for vmid in (1001, 1002)}
    build = parse_record(co.pve.vm(1002).config["description"])["build"]
    assert build != builds[1002] and after == {1001: before[1001], 1002: f"phx-1002-{build}"}



def test_the_root_layer_disk_is_resized_to_boot_disk_size_gb(vm_checkout: Checkout):
    # the README: the root layer is created from the cloud image, "the disk resized to `boot_disk_size_gb`"
    co = vm_checkout
    path = co.root / "etc" / "phoenix_vm_configs.json"
    data = json.loads(path.read_text())
    assert data["virtual_machines"][0]["vm_id"] == 9000
    data["virtual_machines"][0]["boot_disk_size_gb"] = 12
    path.write_text(json.dumps(data))
    assert co.doit("vm9000").rc == 0
    resizes = [parse_qs(b.decode()) for m, p, b in co.pve.requests if m == "PUT" and p == f"{NODE}/qemu/9000/resize"]
    assert resizes == [{"disk": ["scsi0"], "size": ["12G"]}]


def test_a_templates_children_are_linked_clones_and_a_golden_images_full_clones_of_its_snapshot(vm_checkout: Checkout):
    # the README: a parent with convert_to_template has linked clones; one with template_snapshot_name, full clones
    # of that snapshot
    co = vm_checkout
    assert co.doit("vm1001").rc == 0
    clones = {p.split("/")[-2]: parse_qs(b.decode()) for m, p, b in co.pve.requests
              if m == "POST" and p.startswith(f"{NODE}/qemu/") and p.endswith("/clone")}
    assert set(clones) == {"9000", "9001"}
    linked, full = clones["9000"], clones["9001"]
    assert linked["newid"] == ["9001"] and linked.get("full", ["0"]) == ["0"] and "snapname" not in linked, linked
    assert full["newid"] == ["1001"] and full["full"] == ["1"] and full["snapname"] == ["docker-golden"], full
    assert co.pve.vm(9000).template and not co.pve.vm(9001).template


def test_a_missing_cloud_image_is_fetched_through_the_api_as_import_content(vm_checkout: Checkout):
    # the README: the image "is fetched onto the node through the API when it is missing (download-url,
    # content=import, PVE 8.4+)"
    co = vm_checkout
    volumes = co.pve.storages["local"]["volumes"]
    assert "import/noble-server-cloudimg-amd64.qcow2" not in volumes  # the simulated node starts without it
    result = co.doit("vm9000")
    assert result.rc == 0, result.output
    (asked,) = [parse_qs(b.decode()) for m, p, b in co.pve.requests
                if m == "POST" and p == f"{NODE}/storage/local/download-url"]
    assert asked["content"] == ["import"] and asked["filename"] == ["noble-server-cloudimg-amd64.qcow2"], asked
    assert asked["url"] == ["https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img"]
    assert "import/noble-server-cloudimg-amd64.qcow2" in volumes
    mark = co.mark()
    assert co.doit("forget", "vm9000").rc == 0 and co.doit("vm9000").rc == 0  # there now: not fetched again
    assert not [p for m, p, _ in co.pve.requests[mark:] if p.endswith("/download-url")]


def test_a_vm_build_waits_for_the_agent_then_cloud_init_then_runs_its_features_with_a_vm_context(vm_checkout: Checkout):
    # the README: "wait for the guest agent (agent/ping), wait for cloud-init (cloud-init status --wait), the features
    # through the guest agent"; the context has guest_kind "vm"; PHOENIX_SECRETS points at /var/lib/phoenix/secrets
    import base64

    co = vm_checkout
    assert co.doit("vm9001").rc == 0
    asked = co.pve.vm(9001).agent_requests
    assert asked[0] == ("ping", {}) and asked[1] == ("exec", {"command": ["cloud-init", "status", "--wait"]}), asked[:2]
    written = {a["file"]: base64.b64decode(a["content"]) for c, a in asked if c == "file-write"}
    context = json.loads(written["/var/lib/phoenix/context.json"])
    assert context["guest_kind"] == "vm" and context["vmid"] == 9001 and context["features"] == ["base_setup", "docker"]
    assert "PHX_GUEST_KIND=vm" in written["/var/lib/phoenix/context.env"].decode()
    runs = [a["command"] for c, a in asked if c == "exec" and a["command"][0] == "/usr/bin/env"]
    assert [r[-1] for r in runs] == ["/var/lib/phoenix/run/base_setup.sh", "/var/lib/phoenix/run/docker.sh"]
    assert all("PHOENIX_SECRETS=/var/lib/phoenix/secrets" in r for r in runs)
    execs = [i for i, (c, _) in enumerate(asked) if c == "exec"]
    assert all(asked[i + 1][0] == "exec-status" for i in execs)  # each polled until it exited


def test_a_cloud_image_checksum_is_passed_to_the_download(vm_checkout: Checkout):
    # the README: cloud_images take an "optional checksum + checksum_algorithm"; the node checks the download
    co = vm_checkout
    path = co.root / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    digest = "a" * 64
    data["cloud_images"]["ubuntu-24.04-cloud"].update(checksum=digest, checksum_algorithm="sha256")
    path.write_text(json.dumps(data, indent=1))
    assert co.doit("vm9000").rc == 0
    (asked,) = [parse_qs(b.decode()) for m, p, b in co.pve.requests if p.endswith("/download-url")]
    assert asked["checksum"] == [digest] and asked["checksum-algorithm"] == ["sha256"], asked


def test_snippets_are_named_by_vm_kind_and_content_and_cicustom_names_all_three(vm_checkout: Checkout):
    # the README: named by content ("phoenix-<vmid>-user-<hash>.yml"); "cicustom is set to user=…,network=…,meta=…"
    import hashlib

    co = vm_checkout
    assert co.doit("vm1001").rc == 0
    cicustom = dict(part.split("=", 1) for part in co.pve.vm(1001).config["cicustom"].split(","))
    assert set(cicustom) == {"user", "network", "meta"}
    where = co.cache / "sim" / "storage" / "local" / "snippets"
    for kind, volume in cicustom.items():
        name = volume.removeprefix("local:snippets/")
        found = re.fullmatch(rf"phoenix-1001-{kind}-([0-9a-f]+)\.yml", name)
        assert found, name
        assert hashlib.sha256((where / name).read_bytes()).hexdigest().startswith(found.group(1)), name


def test_a_storage_without_import_content_stops_the_root_layer_before_any_write(vm_checkout: Checkout):
    # the README: a real host needs "`import` content on the storage named by a cloud image's volume"
    co = vm_checkout
    co.pve.storages["local"]["content"] = "iso,vztmpl,backup,snippets"
    mark = co.mark()
    result = co.doit("vm9000")
    assert result.rc == 1 and "Traceback" not in result.output, result.output
    assert ("vm9000: storage local does not allow 'import' content, which cloud image "
            "local:import/noble-server-cloudimg-amd64.qcow2 needs: add it (pvesm set local --content "
            "iso,vztmpl,backup,snippets,import, or in Datacenter > Storage)") in result.output, result.output
    assert "Nothing was changed on the host." in result.output and co.writes(mark) == []


def test_a_smaller_boot_disk_rebuilds_the_vm_and_a_larger_one_grows_it(vm_checkout: Checkout):
    # the README: boot_disk_size_gb is "grown in place; a shrink rebuilds" (the simulator applies a resize, and refuses
    # a shrink, as qemu-server does)
    co = vm_checkout
    assert co.doit().rc == 0
    path = co.root / "etc" / "phoenix_vm_configs.json"
    data = json.loads(path.read_text())
    assert data["virtual_machines"][2]["vm_id"] == 1001
    data["virtual_machines"][2]["boot_disk_size_gb"] = 40
    path.write_text(json.dumps(data))
    assert changes(co.doit()) == {"vm1001": "updated"}  # grown in place
    assert "size=40G" in co.pve.vm(1001).config["scsi0"]
    data["virtual_machines"][2]["boot_disk_size_gb"] = 36  # smaller than now, not than its parent's (a config error)
    path.write_text(json.dumps(data))
    plan = co.doit("plan")
    assert "vm1001  rebuild: boot_disk_size_gb shrinks from 40 to 36 GB, which only a rebuild can do" in plan.output, \
        plan.output
    result = co.doit()
    assert result.rc == 0 and changes(result) == {"vm1001": "built"}, result.output
    assert "size=36G" in co.pve.vm(1001).config["scsi0"] and co.doit().outcomes()["vm1001"] == "up-to-date"


def test_the_simulator_refuses_to_shrink_a_vm_disk_as_a_node_does(vm_checkout: Checkout):
    from phoenix.errors import PhoenixError
    from phoenix.pve.client import Pve

    co = vm_checkout
    assert co.doit("vm9001").rc == 0
    pve = Pve.of(co.sim.endpoint)
    try:
        pve.call("PUT", "nodes/pve1/qemu/9001/resize", disk="scsi0", size="16G")
    except PhoenixError as e:
        assert "shrinking disks is not supported" in str(e), e
    else:
        raise AssertionError("a shrink was accepted")
