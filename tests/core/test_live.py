"""Against a real Proxmox host, when one is configured (PHOENIX_PVE_URL, _NODE, _TOKEN_ID, _TOKEN_FILE, _CA_FILE,
_FINGERPRINT; _STORAGE, a storage with iso content, default local)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phoenix.facts.guests import parse_resources
from phoenix.pve import reader
from phoenix.pve.client import Pve
from phoenix.pve.counters import Counters
from phoenix.pve.endpoint import Endpoint

LIVE = all(os.environ.get(f"PHOENIX_PVE_{k}") for k in ("URL", "TOKEN_ID", "TOKEN_FILE"))
pytestmark = [pytest.mark.live, pytest.mark.skipif(not LIVE, reason="no real Proxmox host configured (PHOENIX_PVE_*)")]


@pytest.fixture
def endpoint() -> Endpoint:
    env = os.environ
    return Endpoint(env["PHOENIX_PVE_URL"], env.get("PHOENIX_PVE_NODE", "pve1"), env["PHOENIX_PVE_TOKEN_ID"],
                    Path(env["PHOENIX_PVE_TOKEN_FILE"]), verify=env.get("PHOENIX_PVE_CA_FILE") or True,
                    fingerprint=env.get("PHOENIX_PVE_FINGERPRINT") or None)


@pytest.fixture
def pve(endpoint: Endpoint) -> Pve:
    return Pve.of(endpoint)


def test_listing_is_one_request_and_parses(pve: Pve):
    items = pve.get("cluster/resources", type="vm")
    assert pve.counters.total == 1
    guests = parse_resources(items)
    assert all(g.vmid >= 100 for g in guests.values())


def test_task_log_of_a_failed_task_is_shown(pve: Pve):
    """A task that fails on the node (a download from a port nothing listens on: nothing is written) is
    ProxmoxTaskFailed with the task's own log, as the README promises; not an API refusal. A real node only: the
    simulator does not fetch URLs (its task succeeds), and its failed tasks are tested in test_faults."""
    from phoenix.errors import ProxmoxTaskFailed

    storage = os.environ.get("PHOENIX_PVE_STORAGE", "local")
    with pytest.raises(ProxmoxTaskFailed) as failed:
        pve.run("POST", f"nodes/{pve.node}/storage/{storage}/download-url", content="iso",
                filename="phoenix-live-test.iso", url="http://127.0.0.1:9/phoenix-live-test.iso")
    message = str(failed.value)
    assert "UPID:" in message and "task log:" in message, message
    assert message.split("task log:", 1)[1].strip(), message  # the node's own lines, not an empty log


def test_the_readers_listing_is_pves(endpoint: Endpoint, pve: Pve):
    if not reader.usable(endpoint):
        pytest.skip("the reader needs PHOENIX_PVE_CA_FILE or PHOENIX_PVE_FINGERPRINT, and no proxy")
    counters = Counters()
    items = reader.get(endpoint, counters, "cluster/resources", type="vm")
    assert items is not None and (counters.reads, counters.retries) == (1, 0)
    assert sorted(i["vmid"] for i in items) == sorted(i["vmid"] for i in pve.get("cluster/resources", type="vm"))
