"""A fresh host restored from the artifact store: layers whose identity has an archive are restored, the rest baked."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from phoenix.artifacts.store import ENV
from phoenix.facts.guests import parse_record
from tests.artifacts.conftest import flip_a_byte
from tests.core.conftest import NODE, Checkout

ALL = ("ct900", "ct901", "ct902", "ct910", "ct920", "ct950")


@pytest.fixture
def exported(built: Checkout, store: Path) -> dict[str, dict]:
    """ct920 and its ancestors exported from a built host; their manifests by layer."""
    result = built.doit("export", "ct920")
    assert result.rc == 0, result.output
    return {m["layer"]: m for m in (json.loads(p.read_text()) for p in store.glob("*.json"))}


@pytest.fixture
def fresh(tmp_path: Path):
    co = Checkout(tmp_path / "fresh")
    yield co
    co.stop_sim()


def record(co: Checkout, vmid: int) -> dict:
    found = parse_record(co.ct(vmid).config.get("description"))
    assert found, co.ct(vmid).config
    return found


def test_a_fresh_host_restores_what_has_an_archive_and_bakes_the_rest(built: Checkout, exported: dict, fresh: Checkout,
                                                                        store: Path) -> None:
    plan = fresh.doit("plan")
    assert plan.rc == 0, plan.output
    for layer in ("ct900", "ct901", "ct920"):
        assert re.search(rf"{layer}\s+restore from artifact {re.escape(exported[layer]['archive'])} \(not on the host\)",
                         plan.output), plan.output
    assert re.search(r"ct902\s+build", plan.output) and re.search(r"ct950\s+build", plan.output), plan.output
    steps = fresh.doit("plan", "--steps", "ct900").output
    assert f"copy artifact {exported['ct900']['archive']} to the node: copy " in steps, steps
    assert re.search(r"POST /nodes/pve1/lxc .*ostemplate=local:backup/vzdump-lxc-900-.*restore=1", steps), steps
    mark = fresh.mark()
    result = fresh.doit()
    assert result.rc == 0, result.output
    assert result.outcomes() == {"ct900": "restored", "ct901": "restored", "ct920": "restored",
                                 "ct902": "built", "ct910": "built", "ct950": "built"}
    writes = fresh.writes(mark)
    # restored layers are never created from the OS template nor cloned; the others clone from them as from a bake
    assert (("POST", f"{NODE}/lxc/900/clone") in writes) and (("POST", f"{NODE}/lxc/920/clone") in writes)
    restores = [b for m, p, b in fresh.pve.requests[mark:] if m == "POST" and p == f"{NODE}/lxc"]
    assert len(restores) == 3 and all("restore" in str(b) and "backup" in str(b) for b in restores), restores
    assert "vztmpl" not in str(restores)
    # nothing restored differs from a baked layer as its children see it: identity, build, snapshot, template
    for layer, vmid in (("ct900", 900), ("ct901", 901), ("ct920", 920)):
        assert f"phx-id-{exported[layer]['identity']}" in fresh.tags(vmid)
        assert built.tags(vmid) == fresh.tags(vmid)
        assert set(built.ct(vmid).snapshots) == set(fresh.ct(vmid).snapshots)
        assert built.ct(vmid).config.get("template") == fresh.ct(vmid).config.get("template")
    assert record(fresh, 920)["restored_from"] == exported["ct920"]["archive"]
    assert record(fresh, 920)["build"] == exported["ct920"]["build"] == record(built, 920)["build"]
    # no script ran for a restored layer
    runs = [json.loads(line) for line in (fresh.cache / "sim" / "runs.jsonl").read_text().splitlines()]
    ran = {r["layer"] for r in runs if r["op"] == "run_script"}
    assert not ran & {"ct900", "ct901", "ct920"} and {"ct902", "ct950"} <= ran
    assert not list((fresh.cache / "sim" / "node-fs").rglob("vzdump-*"))  # the archives are removed from the node
    assert "phoenix: 3 built, 3 restored, 0 updated" in result.output
    again = fresh.doit()
    assert again.outcomes() == dict.fromkeys(ALL, "up-to-date"), again.output


def test_a_corrupted_archive_is_refused_and_the_layer_baked(exported: dict, fresh: Checkout, store: Path) -> None:
    archive = store / exported["ct901"]["archive"]
    flip_a_byte(archive)
    result = fresh.doit()
    assert result.rc == 0, result.output
    # the README: "phoenix: artifact refused for ct901: ... the layer is baked instead"
    assert re.search(r"^phoenix: artifact refused for ct901: .*does not match its manifest's sha256 .*; the layer is "
                     r"baked instead$", result.output, re.M), result.output
    assert "Traceback" not in result.output
    # 900 is restored; 901 is baked, and so 920 (its archive is for 901's old build) follows
    assert result.outcomes()["ct900"] == "restored"
    assert result.outcomes()["ct901"] == "built" and result.outcomes()["ct920"] == "built"


def test_without_a_store_every_layer_is_baked(exported: dict, fresh: Checkout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV)
    result = fresh.doit()
    assert result.rc == 0 and result.outcomes() == dict.fromkeys(ALL, "built"), result.output


def test_a_forced_rebuild_bakes_even_with_an_archive(exported: dict, fresh: Checkout) -> None:
    assert fresh.doit().outcomes()["ct920"] == "restored"
    assert fresh.doit("forget", "ct920").rc == 0
    plan = fresh.doit("plan")
    assert re.search(r"ct920\s+rebuild: forced", plan.output) and "restore from" not in plan.output, plan.output
    result = fresh.doit()
    assert result.outcomes()["ct920"] == "built" and result.outcomes()["ct950"] == "built", result.output
    assert f"phx-id-{exported['ct920']['identity']}" in fresh.tags(920)  # same inputs, same identity; a new build
    assert record(fresh, 920).get("build") != exported["ct920"]["build"]


def test_a_template_layer_is_restored_as_a_template_and_its_children_linked_clones(tmp_path: Path, store: Path) -> None:
    hosts = [Checkout(tmp_path / name) for name in ("first", "second")]
    try:
        for co in hosts:
            co.edit_guest(902, convert_to_template=True, template_snapshot_name=None)
        first, second = hosts
        assert first.doit().rc == 0 and first.ct(902).config.get("template") == 1
        assert first.doit("export", "ct902").rc == 0
        mark = second.mark()
        result = second.doit()
        assert result.rc == 0, result.output
        assert result.outcomes()["ct902"] == "restored" and result.outcomes()["ct910"] == "built"
        # Proxmox makes a container restored from a template's archive a template: Phoenix does not convert it again
        assert second.ct(902).config.get("template") == 1
        writes = second.writes(mark)
        assert ("POST", f"{NODE}/lxc/902/template") not in writes
        assert ("POST", f"{NODE}/lxc/902/clone") in writes  # 910: a linked clone, which only a template allows
        assert second.tags(902) == first.tags(902)
    finally:
        for co in hosts:
            co.stop_sim()


def test_an_archive_damaged_after_it_was_checked_is_caught_as_it_is_sent_then_refused(exported: dict, fresh: Checkout,
                                                                                      store: Path) -> None:
    assert "restore from artifact" in fresh.doit("plan").output  # hashed once, remembered in .cache/
    archive = store / exported["ct900"]["archive"]
    st = archive.stat()
    data = bytearray(archive.read_bytes())
    data[-1] ^= 0xFF
    archive.write_bytes(bytes(data))
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and time: the remembered hash is trusted
    failed = fresh.doit()
    assert failed.rc == 1 and "changed since it was checked" in failed.output, failed.output
    assert not list((fresh.cache / "sim" / "node-fs").rglob("vzdump-*"))  # the bad copy is removed from the node
    again = fresh.doit()
    assert "artifact refused for ct900" in again.output and again.outcomes()["ct900"] == "built", again.output


def test_a_foreign_archive_under_a_layers_identity_is_refused_and_the_layer_baked(exported: dict, fresh: Checkout,
                                                                                 store: Path) -> None:
    from tests.artifacts.test_vm_restore import relabel

    relabel(store, exported["ct901"], exported["ct900"])
    result = fresh.doit()
    assert result.rc == 0, result.output
    assert re.search(r"^phoenix: artifact refused for ct901: .* a foreign or replayed archive; the layer is baked "
                     r"instead$", result.output, re.M), result.output
    assert result.outcomes()["ct900"] == "restored" and result.outcomes()["ct901"] == "built"
    assert record(fresh, 901).get("restored_from") is None and "restored_from" in record(fresh, 900)
