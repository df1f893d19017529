"""Against a real Proxmox host, when one is configured (PHOENIX_PVE_URL, _NODE, _TOKEN_ID, _TOKEN_FILE, _CA_FILE)."""

from __future__ import annotations

import os

import pytest

from phoenix.facts import parse_resources
from phoenix.pve.client import Pve
from phoenix.transport.secrets import read_secret

LIVE = all(os.environ.get(f"PHOENIX_PVE_{k}") for k in ("URL", "TOKEN_ID", "TOKEN_FILE"))
pytestmark = [pytest.mark.live, pytest.mark.skipif(not LIVE, reason="no real Proxmox host configured (PHOENIX_PVE_*)")]


@pytest.fixture
def pve() -> Pve:
    env = os.environ
    return Pve(env["PHOENIX_PVE_URL"], env.get("PHOENIX_PVE_NODE", "pve1"), env["PHOENIX_PVE_TOKEN_ID"],
               read_secret(env["PHOENIX_PVE_TOKEN_FILE"]), verify=env.get("PHOENIX_PVE_CA_FILE") or True)


def test_listing_is_one_request_and_parses(pve: Pve):
    items = pve.get("cluster/resources", type="vm")
    assert pve.counters.total == 1
    guests = parse_resources(items, pve.node)
    assert all(g.vmid >= 100 for g in guests.values())


def test_task_log_of_a_failed_task_is_shown(pve: Pve):
    from phoenix.errors import TaskFailed

    with pytest.raises((TaskFailed, Exception)):
        pve.run("POST", f"nodes/{pve.node}/lxc/999999999/status/start")
