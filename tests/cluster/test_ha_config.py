"""The `ha` key of a guest: what it declares, and where it is refused (pure: no server)."""

from __future__ import annotations

from pathlib import Path

from phoenix.facts.guests import GuestFacts
from phoenix.kinds import ha
from tests.core.test_config import copy_example, edit, problems


def test_a_template_layer_is_refused_under_ha(tmp_path: Path):
    root = copy_example(tmp_path)
    edit(root, lambda c: c["920"].update(ha={"state": "started"}))
    found = problems(root)
    assert any('lxc_configs.920' in p and "is not a service for HA to keep running; remove ha" in p
               for p in found), found


def test_an_unknown_ha_state_is_refused(tmp_path: Path):
    root = copy_example(tmp_path)
    edit(root, lambda c: c["950"].update(ha={"state": "running"}))
    found = problems(root)
    assert any('lxc_configs.950.ha.state' in p and "started" in p for p in found), found


def test_the_listing_shows_what_differs_from_the_declared_state():
    want = {"state": "started"}
    assert ha.state_change(want, GuestFacts(950, hastate="started")) is None
    assert ha.state_change(want, GuestFacts(950)) == "ha: not under HA -> started"
    assert ha.state_change(want, GuestFacts(950, hastate="stopped")) == "ha: stopped -> started"
    assert ha.state_change(None, GuestFacts(950, hastate="started")) is None   # not declared: left as it is


def test_only_an_undeclared_guest_under_ha_is_refused_a_rebuild():
    under = GuestFacts(1002, hastate="started")
    assert ha.refused("qemu", 1002, "vms.1002", under, declared=True) == []
    assert ha.refused("lxc", 950, "lxc_configs.950", GuestFacts(950), declared=False) == []
    (message,) = ha.refused("qemu", 1002, "vms.1002", under, declared=False)
    assert message.startswith("VM 1002 is under HA") and message.endswith("ha-manager remove vm:1002")


def test_vm_defaults_ha_is_for_the_vms_that_run_services(tmp_path: Path):
    import json
    import shutil

    from phoenix.config.estate import load_estate
    from tests.core.conftest import REPO

    shutil.copytree(REPO / "etc", tmp_path / "etc", ignore=shutil.ignore_patterns("cluster"))
    path = tmp_path / "etc" / "phoenix_vm_configs.json"
    data = json.loads(path.read_text())
    data["vm_defaults"]["ha"] = {"state": "started"}
    path.write_text(json.dumps(data))
    estate = load_estate(tmp_path / "etc", REPO / "images")
    assert {v: vm.ha is not None for v, vm in estate.vms.items()} == {9000: False, 9001: False, 1001: True, 1002: True}


def test_a_stopped_guest_under_ha_is_left_to_ha():
    from phoenix.kinds.running import stopped_by_hand
    from phoenix.resources import Resource

    res = Resource("ct950", "lxc", "x", None, "app", {}, {}, vmid=950, runs=True)
    assert stopped_by_hand(res, GuestFacts(950, status="stopped"))
    assert not stopped_by_hand(res, GuestFacts(950, status="stopped", hastate="stopped"))
    assert not stopped_by_hand(res, GuestFacts(950, status="running"))
