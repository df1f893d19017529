"""VM template layers as archives (issue 15): `doit export` of a VM layer (vzdump of a qemu VM), and a fresh host
restored from the store (POST /nodes/{node}/qemu archive=..., the simulator's own stand-in for a VM restore), its
clones built as usual; a corrupted archive is refused and the layer baked. The request log is audited as in the VM
tests (tests/core/pve_audit.py), and the stand-in's refusals are checked through the API."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from phoenix.errors import PhoenixError
from phoenix.facts.guests import parse_record
from phoenix.pve.client import Pve
from tests.artifacts.conftest import flip_a_byte
from tests.core.conftest import NODE, Checkout, audited
from tests.core.pve_audit import refused as audit_refused

VMS = ("vm9000", "vm9001", "vm1001", "vm1002")
VOLATILE = ("meta", "smbios1", "vmgenid", "description")  # made anew by a restore (unique=1) or a new build


def host(tmp_path: Path, name: str) -> Checkout:
    """A copy of the example estate with its VMs, on a simulated host of its own."""
    return Checkout(tmp_path / name, vms=True)


@pytest.fixture
def first(tmp_path: Path, store: Path):
    with audited(host(tmp_path, "first")) as co:
        yield co


@pytest.fixture
def fresh(tmp_path: Path, store: Path):
    with audited(host(tmp_path, "fresh")) as co:
        yield co


@pytest.fixture
def exported(first: Checkout, store: Path) -> dict[str, dict]:
    """vm9001 (the golden image) and its parent template vm9000 exported from a built host; manifests by layer."""
    assert first.doit().rc == 0
    mark = first.mark()
    result = first.doit("export", "vm9001")
    assert result.rc == 0, result.output
    dumps = [parse_qs(b.decode()) for m, p, b in first.pve.requests[mark:] if m == "POST" and p == f"{NODE}/vzdump"]
    assert [d["vmid"] for d in dumps] == [["9000"], ["9001"]]
    return {m["layer"]: m for m in (json.loads(p.read_text()) for p in store.glob("*.json"))}


def comparable(config: dict) -> dict:
    """A VM's config as its children see it, less what each guest has of its own: volume names (a baked golden image's
    are its linked clone's in fakepve, a restored one's are new) and MACs (fakepve's config PUT adds none; a restore
    with unique=1 makes new ones, as PVE does)."""
    out = {}
    for key, value in config.items():
        if key in VOLATILE:
            continue
        text = str(value)
        text = re.sub(r"local-lvm:(base-\d+-disk-\d+/)?(vm|base)-\d+-disk-\d+", r"local-lvm:\2-disk", text)
        out[key] = re.sub(r"=([0-9A-F]{2}:){5}[0-9A-F]{2}", "", text)
    return out


def test_export_dumps_a_vm_layer_and_its_template(exported: dict, first: Checkout, store: Path) -> None:
    assert set(exported) == {"vm9000", "vm9001"}
    for layer, vmid in (("vm9000", 9000), ("vm9001", 9001)):
        m = exported[layer]
        assert m["kind"] == "vm" and m["vmid"] == vmid
        assert f"phx-id-{m['identity']}" in first.pve.vm(vmid).config["tags"]
        with tarfile.open(store / m["archive"]) as tar:  # PVE's tar format of a VM backup: the config as qemu-server.conf
            conf = tar.extractfile("./qemu-server.conf")
            assert conf is not None and "scsi0: local-lvm:" in conf.read().decode()
    assert exported["vm9001"]["parent_identity"] == exported["vm9000"]["identity"]
    with tarfile.open(store / exported["vm9000"]["archive"]) as tar:
        conf = tar.extractfile("./qemu-server.conf")
        assert conf is not None and "template: 1" in conf.read().decode()
    assert not list((first.cache / "sim" / "node-fs").rglob("vzdump-*"))  # the dumps are removed from the node
    again = first.doit("export", "vm9001")
    assert again.rc == 0 and "already in the store" in again.output, again.output


def test_a_fresh_host_restores_the_vm_layers_and_builds_their_clones(exported: dict, first: Checkout,
                                                                   fresh: Checkout) -> None:
    plan = fresh.doit("plan")
    assert plan.rc == 0, plan.output
    for layer in ("vm9000", "vm9001"):
        assert re.search(rf"{layer}\s+restore from artifact {exported[layer]['archive']}", plan.output), plan.output
    assert re.search(r"vm1001\s+build", plan.output) and re.search(r"vm1002\s+build", plan.output), plan.output
    steps = fresh.doit("plan", "--steps", "vm9000").output
    assert f"copy artifact {exported['vm9000']['archive']} to the node: copy " in steps, steps
    assert re.search(r"POST /nodes/pve1/qemu  vmid=9000 archive=local:backup/vzdump-qemu-9000-\S+ storage=local-lvm "
                     r"unique=1 ", steps), steps
    assert "import-from" not in steps and "download" not in steps and "/template" not in steps, steps
    mark = fresh.mark()
    result = fresh.doit()
    assert result.rc == 0, result.output
    assert {k: v for k, v in result.outcomes().items() if k.startswith("vm")} == {
        "vm9000": "restored", "vm9001": "restored", "vm1001": "built", "vm1002": "built"}
    pve = fresh.pve
    creates = [parse_qs(b.decode()) for m, p, b in pve.requests[mark:] if m == "POST" and p == f"{NODE}/qemu"]
    assert len(creates) == 2 and all("import-from" not in str(c) for c in creates), creates
    for create, vmid in zip(creates, (9000, 9001), strict=True):
        assert create["vmid"] == [str(vmid)] and create["unique"] == ["1"] and create["storage"] == ["local-lvm"]
        assert re.fullmatch(rf"local:backup/vzdump-qemu-{vmid}-[0-9_-]+\.tar\.gz", create["archive"][0]), create
    writes = fresh.writes(mark)
    assert ("POST", f"{NODE}/qemu/9000/clone") not in writes  # 9001 is restored, not cloned from the template
    assert ("POST", f"{NODE}/qemu/9000/template") not in writes  # Proxmox makes the restored template a template
    assert ("POST", f"{NODE}/qemu/9001/clone") in writes  # 1001 and 1002: full clones of the restored golden image
    assert not [p for _, p in writes if p.endswith("/download-url")]  # no layer needed the cloud image, which
    assert [p for _, p in first.writes() if p.endswith("/download-url")]  # the baked template was made from
    assert not [r for r in pve.vm(9001).agent_requests]  # nothing ran in a restored layer
    assert pve.vm(1001).agent_requests  # its clones are built as usual
    # nothing about a restored layer differs from a baked one as its children see it
    for vmid in (9000, 9001):
        baked, restored = first.pve.vm(vmid), pve.vm(vmid)
        assert comparable(restored.config) == comparable(baked.config)
        assert restored.template == baked.template and restored.status == baked.status == "stopped"
        assert set(restored.snapshots) == set(baked.snapshots)
        assert parse_record(restored.config["description"])["restored_from"] == exported[f"vm{vmid}"]["archive"]
        for key in ("identity", "build", "parent_build", "snippets", "inputs"):
            assert parse_record(restored.config["description"])[key] == parse_record(baked.config["description"])[key]
    assert pve.vm(9000).template and pve.vm(9000).config["scsi0"].startswith("local-lvm:base-9000-disk-")
    assert pve.vm(9001).config["net0"] != first.pve.vm(9001).config["net0"]  # unique=1: its own MAC
    assert not list((fresh.cache / "sim" / "node-fs").rglob("vzdump-*"))
    assert "2 restored" in result.output
    fresh.stop_sim()  # the restored VMs, their volumes and snapshot are kept in the simulator's state
    again = fresh.doit()
    assert again.rc == 0 and set(again.outcomes().values()) == {"up-to-date"}, again.output
    assert fresh.pve.vm(9000).template and "docker-golden" in fresh.pve.vm(9001).snapshots
    held = {n for n, v in fresh.pve.storages["local-lvm"]["volumes"].items() if v.get("vmid") in (9000, 9001)}
    assert {fresh.pve.vm(v).config["scsi0"].split(",")[0].split(":")[1] for v in (9000, 9001)} <= held


def test_export_without_tasks_takes_every_template_layer_and_a_running_vm_is_restored_running(
        first: Checkout, fresh: Checkout, store: Path) -> None:
    assert first.doit().rc == 0
    result = first.doit("export")
    assert result.rc == 0, result.output
    layers = {json.loads(p.read_text())["layer"] for p in store.glob("*.json")}
    assert layers == {"ct900", "ct901", "ct902", "ct920", "vm9000", "vm9001"}  # template layers only, of both kinds
    mark = first.mark()
    assert first.doit("export", "vm1001").rc == 0  # an app VM that runs: dumped in snapshot mode
    dump = next(parse_qs(b.decode()) for m, p, b in first.pve.requests[mark:] if m == "POST" and p == f"{NODE}/vzdump")
    assert dump["vmid"] == ["1001"] and dump["mode"] == ["snapshot"]
    run = fresh.doit()
    assert run.rc == 0, run.output
    outcomes = run.outcomes()
    assert [outcomes[k] for k in ("vm9000", "vm9001", "vm1001", "vm1002")] == ["restored", "restored", "restored",
                                                                                "built"], run.output
    vm = fresh.pve.vm(1001)
    assert vm.status == "running" and fresh.pve.vm(9001).status == "stopped"
    asked = [cmd for cmd, _ in vm.agent_requests]
    assert "ping" in asked and asked.count("exec") == 1  # waited for the agent and cloud-init; no feature ran
    assert fresh.doit().outcomes()["vm1001"] == "up-to-date"


def test_a_corrupted_vm_archive_is_refused_and_the_layer_baked(exported: dict, fresh: Checkout, store: Path) -> None:
    archive = store / exported["vm9000"]["archive"]
    flip_a_byte(archive)
    result = fresh.doit()
    assert result.rc == 0, result.output
    assert "artifact refused for vm9000" in result.output and "does not match its manifest's sha256" in result.output
    assert "Traceback" not in result.output
    outcomes = result.outcomes()
    # 9000 baked from the cloud image; 9001's archive is for 9000's old build: it is baked too
    assert outcomes["vm9000"] == "built" and outcomes["vm9001"] == "built", result.output
    assert not any(p == f"{NODE}/qemu" and b"archive" in b for m, p, b in fresh.pve.requests if m == "POST")


def api(co: Checkout) -> Pve:
    """The simulated node's API over HTTPS with the run's token, as Phoenix reaches it."""
    assert co.sim.endpoint is not None
    return Pve.of(co.sim.endpoint)


def test_the_simulated_restore_checks_what_a_node_checks(exported: dict, tmp_path: Path, store: Path) -> None:
    """Requests a real node refuses, sent on purpose to a host of their own (not audited: the audit is checked here)."""
    co = host(tmp_path, "probe")
    try:
        assert co.doit("ct900").rc == 0
        pve = co.pve
        dump = co.cache / "sim" / "node-fs" / "var" / "lib" / "vz" / "dump"
        dump.mkdir(parents=True, exist_ok=True)
        name = "vzdump-qemu-9000-2026_11_29-08_00_00.tar.gz"
        (dump / name).write_bytes((store / exported["vm9000"]["archive"]).read_bytes())
        lxc_name = "vzdump-lxc-900-2026_11_29-08_00_00.tar.gz"
        (dump / lxc_name).write_bytes(b"")
        client = api(co)
        mark = co.mark()

        def refused(**params) -> str:
            with pytest.raises(PhoenixError) as e:
                client.wait(client.call("POST", "nodes/pve1/qemu", **params), 30)
            return str(e.value)

        volid = f"local:backup/{name}"
        assert "conflicts with option 'archive'" in refused(vmid=7000, archive=volid, scsi0="local-lvm:8")
        assert "content type needs to be 'backup'" in refused(vmid=7000, archive="local:iso/x.iso")
        assert len(audit_refused(pve.requests[mark:])) == 2  # the audit finds both
        assert "can't find archive" in refused(vmid=7000, archive="local:backup/vzdump-qemu-1-2026_01_01-00_00_00.tar.gz")
        assert "is not a VM backup" in refused(vmid=7000, archive=f"local:backup/{lxc_name}")
        assert "CT 900 already exists" in refused(vmid=900, archive=volid, force=1)  # a container's VMID, even forced
        # a template's archive is restored as a template, its disks base volumes, its NICs new MACs with unique=1
        client.wait(client.call("POST", "nodes/pve1/qemu", vmid=7000, archive=volid, storage="local-lvm", unique=1), 30)
        vm = pve.vm(7000)
        assert vm.template and vm.config["template"] == 1 and "base-7000-disk-" in vm.config["scsi0"]
        assert vm.lock is None and not vm.snapshots and vm.status == "stopped"
        assert "VM 7000 already exists" in refused(vmid=7000, archive=volid)  # taken, no force
        # force=1 overwrites a stopped VM (its disks freed); a protected one is refused
        vm.config["protection"] = 1
        assert "protection mode enabled" in refused(vmid=7000, archive=volid, force=1)
        vm.config.pop("protection")
        client.wait(client.call("POST", "nodes/pve1/qemu", vmid=7000, archive=volid, force=1), 30)
        vm = pve.vm(7000)
        named = {vm.config[k].split(",")[0].split(":")[1] for k in ("scsi0", "ide2")}
        held = {n for n, v in pve.storages["local-lvm"]["volumes"].items() if v.get("vmid") == 7000}
        assert vm.template and held == named, (held, named)  # the overwritten VM's disks are gone
    finally:
        co.stop_sim()


def relabel(store: Path, victim: dict, source: dict) -> None:
    """Put another layer's archive under the victim's name, its manifest's size and sha256 made to match: what a
    copy into the wrong name, or a deliberate swap by someone who can write the store, leaves."""
    import hashlib

    data = (store / source["archive"]).read_bytes()
    (store / victim["archive"]).write_bytes(data)
    path = store / f"{victim['identity']}.json"
    manifest = json.loads(path.read_text())
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    path.write_text(json.dumps(manifest))


def test_a_foreign_vm_archive_under_a_layers_identity_is_refused_and_the_layer_baked(exported: dict, fresh: Checkout,
                                                                                   store: Path) -> None:
    relabel(store, exported["vm9001"], exported["vm9000"])
    result = fresh.doit()
    assert result.rc == 0, result.output
    assert re.search(rf"^phoenix: artifact refused for vm9001: archive {exported['vm9001']['archive']} holds layer "
                     rf"identity {exported['vm9000']['identity']} .*a foreign or replayed archive; the layer is baked "
                     r"instead$", result.output, re.M), result.output
    outcomes = result.outcomes()
    assert outcomes["vm9000"] == "restored" and outcomes["vm9001"] == "built", result.output
    restores = [parse_qs(b.decode()) for m, p, b in fresh.pve.requests if m == "POST" and p == f"{NODE}/qemu"
                and b"archive" in b]
    assert [r["vmid"] for r in restores] == [["9000"]]  # never restored from the foreign archive
    assert parse_record(fresh.pve.vm(9001).config.get("description"))["identity"] == exported["vm9001"]["identity"]
