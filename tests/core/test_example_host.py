"""The example hypervisor config declares the node's own parts: `phoenix setup-hypervisor` sets them up on the
simulated host out of the box (and only them), and the second time changes nothing."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from phoenix.sim.host import SimHost

from .conftest import copy_project
from .test_phoenix_cli import phoenix

PARTS = ("host:repos", "host:storage", "host:network", "host:access", "host:nvidia")


def test_setup_hypervisor_on_the_example_does_real_work_then_nothing(tmp_path: Path):
    project = copy_project(tmp_path / "phoenix", host=True)
    first = phoenix(project, "setup-hypervisor")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "phoenix: 5 built, 0 updated, 0 up-to-date, 0 failed;" in first.stdout, first.stdout
    last = json.loads((project / ".cache" / "last-run.json").read_text())
    assert {k: v["outcome"] for k, v in last["tasks"].items()} == dict.fromkeys(PARTS, "built")  # no guest
    token = project / "etc" / "phoenix_api_token.conf"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text().strip()
    assert token.read_text().strip() not in first.stdout + first.stderr

    again = phoenix(project, "setup-hypervisor")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to do" in again.stdout and "; 2 API requests;" in again.stdout, again.stdout

    # what the node has now (the simulator's saved state)
    sim = SimHost(project / ".cache" / "sim")
    sim.start()
    try:
        pve = sim.pve
        assert pve.storages["vmdata"]["type"] == "dir" and pve.storages["vmdata"]["path"] == "/srv/vmdata"
        assert set(pve.storages["vmdata"]["content"].split(",")) == {"snippets", "import", "iso", "backup"}
        assert pve.node_state["network"]["vmbr1"]["bridge_vlan_aware"] == 1
        assert "phoenix" in pve.node_state["users"]["phoenix@pve"]["tokens"]
        assert any("pve-no-subscription" in r["Components"] and r["Enabled"]
                   for f in pve.node_state["apt"] for r in f["repositories"])
        assert not pve.cts and not pve.vms  # the guests are not the host's parts
    finally:
        sim.stop()
