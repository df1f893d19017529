"""The cluster example built on a simulated three-node cluster: placement, copies, clones across, and the no-op."""

from __future__ import annotations

from itertools import pairwise
from urllib.parse import parse_qsl

from phoenix.facts.guests import split_tags
from tests.core.conftest import REPO

from .conftest import ClusterCheckout


def tags(guest) -> set[str]:
    return set(split_tags(guest.config.get("tags")))


def layer(guest) -> set[str]:
    """The layer's record in the guest's tags: identity and build."""
    return {t for t in tags(guest) if t.startswith(("phx-id-", "phx-b-"))}


def readme_placement() -> dict[str, tuple[str, str]]:
    """The README's placement table of the cluster example: guest -> (member, the reason doit plan gives)."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("| guest | member | why (`doit plan`) |"):].split("\n\n", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    return {r[0]: (r[1], r[2]) for r in rows}


def test_the_plan_places_the_layers_as_the_readme_says(cluster: ClusterCheckout):
    plan = cluster.doit("plan")
    assert plan.rc == 0, plan.output
    assert "target is the SIMULATED Proxmox cluster of pve1, pve2, pve3 at https://127.0.0.1:" in plan.output
    table = readme_placement()
    assert set(table) == {"ct900", "ct901", "ct902", "ct910", "ct920", "ct950"}
    for key, (member, why) in table.items():
        line = next(line for line in plan.output.splitlines() if line.startswith(f"{key} "))
        assert why in line.split("[", 1)[1], (key, line)
        assert member in line, (key, line)
    ct920 = next(line for line in plan.output.splitlines() if line.startswith("ct920 "))
    assert ct920.endswith("[the config places it on pve1; then copied to pve2 for its guests there]"), ct920


def test_the_layers_are_placed_as_the_readme_says(built_cluster: ClusterCheckout):
    co = built_cluster
    assert {int(k[2:]): m for k, (m, _) in readme_placement().items()} == \
        {v: co.on(v) for v in (900, 901, 902, 920, 950, 910)}
    assert {v: co.on(v) for v in (900, 901, 902, 920, 950, 910)} == \
        {900: "pve1", 901: "pve1", 902: "pve1", 920: "pve1", 950: "pve2", 910: "pve3"}
    copy = co.pve.ct(200920)   # 920's copy on pve2 (node id 2): 950 is cloned from it there
    assert copy is not None and copy.node == "pve2"
    assert "phx-copy-920" in tags(copy) and layer(co.ct(920)) == layer(copy)          # the layer's identity and build
    clones = [(p, dict(parse_qsl(b.decode()))) for m, p, b in co.pve.requests if m == "POST" and p.endswith("/clone")]
    by_new = {int(b["newid"]): (p, b) for p, b in clones}
    assert by_new[950][0] == "/api2/json/nodes/pve2/lxc/200920/clone"                  # from the copy, on pve2
    assert by_new[910][0] == "/api2/json/nodes/pve1/lxc/902/clone" and by_new[910][1]["target"] == "pve3"
    assert by_new[910][1]["storage"] == "ceph"                                           # across: both on Ceph
    posts = [(p, dict(parse_qsl(b.decode()))) for m, p, b in co.pve.requests if m == "POST"]
    assert [p for p, _ in posts if p.endswith("/vzdump")] == ["/api2/json/nodes/pve1/vzdump"]   # baked once, dumped once
    restores = [(p, b) for p, b in posts if "backup/" in b.get("ostemplate", "")]
    assert [(p, b["vmid"]) for p, b in restores] == [("/api2/json/nodes/pve2/lxc", "200920")]  # restored once, on pve2
    assert sum(1 for p, b in posts if p.endswith("/lxc") and b.get("vmid") == "920") == 0       # 920 is a clone of 901


def test_a_second_run_is_a_noop_with_one_request(built_cluster: ClusterCheckout):
    co = built_cluster
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0, result.output
    assert [(m, p) for m, p, _ in co.pve.requests[mark:]] == [("GET", "/api2/json/cluster/resources")]
    assert "nothing to do" in result.output


def test_a_vllm_change_rebakes_920_and_950_once_and_refreshes_the_copy(built_cluster: ClusterCheckout):
    co = built_cluster
    script = co.root / "images" / "features" / "vllm.sh"
    script.write_text(script.read_text() + "\n# a change\n")
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0, result.output
    assert {k: v for k, v in result.outcomes().items() if v != "up-to-date"} == {"ct920": "built", "ct950": "built"}
    writes = [(m, p) for m, p in co.writes(mark)]
    assert writes.count(("POST", "/api2/json/nodes/pve1/vzdump")) == 1            # one copy to pve2
    assert ("DELETE", "/api2/json/nodes/pve2/lxc/200920") in writes               # the old copy replaced
    assert layer(co.pve.ct(200920)) == layer(co.ct(920))                             # of the new build
    assert not any(p.endswith(("/lxc/900", "/lxc/901", "/lxc/902", "/lxc/910")) for _, p in writes)
    mark = co.mark()
    assert co.doit().rc == 0 and len(co.pve.requests) - mark == 1


def test_a_guest_migrated_by_hand_is_found_where_it_is_and_not_rebuilt(built_cluster: ClusterCheckout):
    co = built_cluster
    co.pve.ct(910).node = "pve2"   # as `pct migrate 910 pve2` leaves it
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0 and "nothing to do" in result.output, result.output
    assert [(m, p) for m, p, _ in co.pve.requests[mark:]] == [("GET", "/api2/json/cluster/resources")]
    co.edit_guest(910, memory_mb=16384)   # an update in place goes to where it is now
    result = co.doit()
    assert result.rc == 0, result.output
    assert any(m == "PUT" and p == "/api2/json/nodes/pve2/lxc/910/config" for m, p in co.writes(mark))


def test_a_member_taken_offline_leaves_its_guests_alone_and_the_rest_builds(built_cluster: ClusterCheckout):
    co = built_cluster
    co.pve.set_node_offline("pve3")
    for ctid in (910, 902):
        co.edit_guest(ctid, cores=3)
    mark = co.mark()
    result = co.doit()
    assert result.rc == 1, result.output
    assert "ct910" in result.output and "pve3 is offline" in result.output
    assert result.outcomes()["ct910"] == "failed" and result.outcomes()["ct902"] == "updated"
    assert not any("/nodes/pve3/" in p for _, p in co.writes(mark))
    assert co.ct(910).node == "pve3"                                                  # nothing made elsewhere for it


def test_without_quorum_nothing_is_written(built_cluster: ClusterCheckout):
    co = built_cluster
    co.edit_guest(902, cores=3)
    co.pve.lose_quorum()
    mark = co.mark()
    result = co.doit()
    assert result.rc == 1 and "Traceback" not in result.output, result.output
    assert "no quorum" in result.output
    assert co.writes(mark) == [] and co.ct(902).config["cores"] == 2
    assert "Traceback" not in result.output and result.output.count("the cluster has no quorum") == 1


def test_a_new_node_in_the_config_moves_the_guest_there_in_place(built_cluster: ClusterCheckout):
    co = built_cluster
    co.edit_guest(902, node="pve2")
    plan = co.doit("plan")
    assert "ct902  update: node pve1 -> pve2" in plan.output, plan.output
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0, result.output
    assert result.outcomes()["ct902"] == "updated" and co.on(902) == "pve2"
    assert ("POST", "/api2/json/nodes/pve1/lxc/902/migrate") in co.writes(mark)
    assert not any(m == "DELETE" for m, _ in co.writes(mark))                      # moved, nothing rebuilt
    mark = co.mark()
    assert co.doit().rc == 0 and len(co.pve.requests) - mark == 1


def test_a_guest_with_bind_mounts_is_not_moved_away_from_its_data(built_cluster: ClusterCheckout):
    co = built_cluster
    co.edit_guest(910, node="pve1")
    mark = co.mark()
    result = co.doit()
    assert result.rc == 1 and "Traceback" not in result.output, result.output
    assert ("bind-mounts host directories of pve3 (/fastData/portainer): their data does not move with it. Move the "
            "data to pve1 and the guest with `pct migrate 910 pve1 --restart`") in result.output
    assert co.writes(mark) == [] and co.on(910) == "pve3"


def test_plan_status_and_graph_say_each_guests_member(built_cluster: ClusterCheckout):
    co = built_cluster
    graph = co.doit("plan", "--graph")
    assert graph.rc == 0, graph.output
    for ctid, node in ((920, "pve1"), (950, "pve2"), (910, "pve3")):
        line = next(x for x in graph.output.splitlines() if x.strip().startswith((f"ct{ctid}(", f"ct{ctid}[")))
        assert line.endswith(f"<br/>on {node}\")") or line.endswith(f"<br/>on {node}\"]"), line
    lines = graph.output.splitlines()
    assert '  ct200920("ct200920 copy of ct920<br/>up to date<br/>on pve2")' in lines   # 920's copy, beside it
    assert "  ct200920 --o|copy of| ct920" in lines
    script = co.root / "images" / "features" / "vllm.sh"
    script.write_text(script.read_text() + "\n# a change\n")
    changed = co.doit("plan", "--graph", "--changed")
    assert changed.rc == 0, changed.output
    assert '  ct200920("ct200920 copy of ct920<br/>rebuild: made again from ct920\'s new build<br/>on pve2")' in \
        changed.output.splitlines(), changed.output


def ha_by_hand(co: ClusterCheckout, sid: str, state: str = "started") -> None:
    """As `ha-manager add <sid> --state <state>` on a member."""
    co.pve.node_state.setdefault("ha", {})[sid] = {"state": state, "max_restart": 1, "max_relocate": 1}
    co.pve.ha_apply()


def test_a_guest_under_ha_is_taken_out_for_its_rebuild_and_put_back(built_cluster: ClusterCheckout):
    co = built_cluster
    co.edit_guest(950, ha={"state": "started", "max_relocate": 2})
    plan = co.doit("plan")
    assert "ct950  update: ha: not under HA -> started" in plan.output, plan.output
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0, result.output
    assert [w for w in co.writes(mark) if "/cluster/ha/" in w[1]] == [("POST", "/api2/json/cluster/ha/resources")]
    assert co.pve.node_state["ha"]["ct:950"] == {"state": "started", "max_restart": 1, "max_relocate": 2}
    mark = co.mark()
    assert co.doit().rc == 0 and len(co.pve.requests) - mark == 1                      # a no-op: HA read from the listing
    script = co.root / "images" / "features" / "vllm.sh"
    script.write_text(script.read_text() + "\n# a change\n")
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0, result.output
    writes = co.writes(mark)
    out_of_ha = writes.index(("DELETE", "/api2/json/cluster/ha/resources/ct:950"))
    assert out_of_ha < writes.index(("DELETE", "/api2/json/nodes/pve2/lxc/950"))        # out of HA before destroyed
    back = writes.index(("POST", "/api2/json/cluster/ha/resources"))
    assert back == len(writes) - 1 or all("/lxc/950" not in p for _, p in writes[back:])  # back after its record
    assert co.pve.ct(950).ha_state == "started" and co.pve.node_state["ha"]["ct:950"]["max_relocate"] == 2
    mark = co.mark()
    assert co.doit().rc == 0 and len(co.pve.requests) - mark == 1
    co.pve.node_state["ha"].pop("ct:950")                                               # `ha-manager remove` by hand
    co.pve.ct(950).ha_state = None
    result = co.doit()
    assert result.rc == 0 and co.pve.ct(950).ha_state == "started", result.output      # put back in place, not rebuilt
    assert result.outcomes()["ct950"] == "updated"


def test_a_guest_put_under_ha_by_hand_is_not_rebuilt(built_cluster: ClusterCheckout):
    co = built_cluster
    ha_by_hand(co, "ct:950")
    mark = co.mark()
    assert co.doit().rc == 0 and len(co.pve.requests) - mark == 1                      # kept as it is: nothing to do
    script = co.root / "images" / "features" / "vllm.sh"
    script.write_text(script.read_text() + "\n# a change\n")
    result = co.doit()
    assert result.rc == 1 and "Traceback" not in result.output, result.output
    assert ("CT 950 is under HA (ha-manager state started) and lxc_configs.950 declares no ha: a rebuild would take it "
            "out of HA for good. Declare `ha: {state: started}` in lxc_configs.950") in result.output
    assert "ha-manager remove ct:950" in result.output
    assert "Nothing was changed on the host" in result.output
    assert co.writes(mark) == [] and co.pve.ct(950).ha_state == "started"    # 920 is not rebaked under its child either


def test_bakes_on_different_members_run_at_the_same_time(tmp_path):
    from .conftest import cluster_audited

    secs = {"create": 20, "clone": 10, "snapshot": 2, "start": 5, "shutdown": 3, "vzdump": 10}
    with cluster_audited(ClusterCheckout(tmp_path / "phoenix", {"time_scale": 0.02, "ct_secs": secs})) as co:
        result = co.doit("-n", "4")
        assert result.rc == 0, result.output
        tasks = [t for t in co.sim.timeline if t[4] - t[3] > 0.05]
        across = [(a, b) for a in tasks for b in tasks if a[0] < b[0] and a[3] < b[4] and b[3] < a[4]]
        assert across, tasks                                            # work on two members overlapped
        clones = sorted((t for t in tasks if t[1] == "vzclone"), key=lambda t: t[3])
        by_source: dict[str, list] = {}
        for t in clones:
            by_source.setdefault(t[2], []).append(t)
        for source, runs in by_source.items():                          # one parent's clones one at a time
            assert all(a[4] <= b[3] + 1e-3 for a, b in pairwise(runs)), (source, runs)
        assert any(len(runs) > 1 for runs in by_source.values()), by_source


def test_a_template_layers_linked_clone_of_its_copy_goes_once_when_the_layer_is_rebaked(cluster: ClusterCheckout):
    co = cluster
    data = co.lxc_config()
    data["lxc_configs"]["920"].pop("template_snapshot_name")
    data["lxc_configs"]["920"]["convert_to_template"] = True    # 950 on pve2: a linked clone of 920's copy there
    co.write_lxc_config(data)
    assert co.doit().rc == 0
    assert co.pve.ct(200920).template and co.on(950) == "pve2"
    script = co.root / "images" / "features" / "vllm.sh"
    script.write_text(script.read_text() + "\n# a change\n")
    mark = co.mark()
    result = co.doit()
    assert result.rc == 0, result.output
    gone = [p for m, p in co.writes(mark) if m == "DELETE" and "/lxc/" in p]
    assert gone.count("/api2/json/nodes/pve2/lxc/950") == 1                          # by 920's rebuild, not again
    assert gone.index("/api2/json/nodes/pve2/lxc/950") < gone.index("/api2/json/nodes/pve2/lxc/200920")
    assert layer(co.pve.ct(200920)) == layer(co.ct(920)) and co.ct(950) is not None


def test_the_served_simulator_serves_a_cluster_that_the_example_builds_on(tmp_path):
    """`python -m phoenix.sim --nodes pve1,pve2,pve3`, as the README's Cluster section gives it: one server for three
    members, which a run of the cluster example (not starting a simulator of its own) builds on, each guest on the
    member the README's table places it on; the state the server saves is the cluster's."""
    import subprocess

    from phoenix.pve.client import Pve
    from phoenix.sim.host import served, spawn

    co = ClusterCheckout(tmp_path / "phoenix")
    state = co.cache / "sim"
    proc = spawn(state, "--nodes", "pve1,pve2,pve3", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        found = served(state)
        assert found is not None
        members = {n["node"] for n in Pve.of(found[0]).get("nodes")}
        assert members == {"pve1", "pve2", "pve3"}
        result = co.doit(own_sim=False)
        assert result.rc == 0 and f"served by process {proc.pid}" in result.output, result.output
        on = {f"ct{g['vmid']}": g["node"] for g in Pve.of(found[0]).get("cluster/resources", type="vm")}
        assert {guest: on[guest] for guest in readme_placement()} == \
            {guest: member for guest, (member, _) in readme_placement().items()}
        assert "ct200920" in on                                     # 920's copy on pve2, where 950 is
        assert co.doit(own_sim=False).outcomes() == dict.fromkeys(result.outcomes(), "up-to-date")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "simulated Proxmox cluster of 3 nodes (pve1, pve2, pve3) at https://127.0.0.1:" in out, out
