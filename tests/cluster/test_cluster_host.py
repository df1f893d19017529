"""host:* on the simulated three-node cluster: the parts each member has its own of run on every member that needs
them (host:nvidia@pve2), the cluster-wide ones (storage definitions, users, roles, tokens) once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.test_host_parts import HOST

from .conftest import ClusterCheckout, cluster_audited

PER_MEMBER = [f"host:{part}@{node}" for part in ("repos", "network") for node in ("pve1", "pve2", "pve3")]
GPU_MEMBERS = ["host:nvidia@pve1", "host:nvidia@pve2"]          # pve3 has no GPUs
ONCE = ["host:storage", "host:access"]


@pytest.fixture
def set_up(tmp_path: Path):
    with cluster_audited(ClusterCheckout(tmp_path / "phoenix")) as co:
        path = co.root / "etc" / "phoenix_hypervisor_config.json"
        data = json.loads(path.read_text())
        data["host"] = {k: v for k, v in HOST.items() if k != "storage"} | {"storage": {"storages": [
            {"id": "vmdata", "type": "dir", "path": "/srv/vmdata", "content": ["snippets", "import", "iso"]}]}}
        path.write_text(json.dumps(data, indent=1))
        result = co.doit()
        assert result.rc == 0, result.output
        yield co, result


def test_each_member_gets_its_own_parts_and_the_cluster_its_shared_ones_once(set_up):
    co, result = set_up
    outcomes = {k: v for k, v in result.outcomes().items() if k.startswith("host:")}
    assert outcomes == dict.fromkeys([*PER_MEMBER, *GPU_MEMBERS, *ONCE], "built")
    for node in ("pve1", "pve2", "pve3"):
        state = co.pve.member_state(node)
        assert state["network"]["vmbr1"]["bridge_vlan_aware"] == 1, node               # each member's own network
        assert any("pve-no-subscription" in r["Components"] and r["Enabled"]
                   for f in state["apt"] for r in f["repositories"]), node
        assert "host:network@" + node in state["description"]                         # recorded in its own notes
    posts = [p for m, p, _ in co.pve.requests if m == "POST"]
    assert posts.count("/api2/json/storage") == 1 and posts.count("/api2/json/access/users") == 1
    assert result.output.index("host:nvidia@pve2") < result.output.index("ct950")      # 950's driver first


def test_the_second_run_reads_each_members_notes_and_changes_nothing(set_up):
    co, _ = set_up
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0 and "nothing to do" in result.output, result.output
    reads = sorted(p for _, p, _ in co.pve.requests[mark:])
    assert reads == ["/api2/json/cluster/resources", *(f"/api2/json/nodes/{n}/config" for n in ("pve1", "pve2", "pve3"))]
