"""Placement rules (pure): where a guest goes on a cluster, and why."""

from __future__ import annotations

from phoenix.cluster.facts import ClusterFacts, NodeFacts, StorageFacts, parse_cluster
from phoenix.cluster.placement import GIB, Guest, Needs, place

LOCAL = {"local": StorageFacts("local", frozenset({"vztmpl", "iso", "backup"})),
         "local-lvm": StorageFacts("local-lvm", frozenset({"rootdir", "images"}))}
CEPH = StorageFacts("ceph", frozenset({"rootdir", "images"}), shared=True)


def cluster(free: dict[str, int], *, ceph: bool = False, offline: tuple[str, ...] = ()) -> ClusterFacts:
    return ClusterFacts({n: NodeFacts(n, n not in offline, 64 * GIB, (64 - f) * GIB, {**LOCAL, **({"ceph": CEPH} if ceph else {})})
                         for n, f in free.items()})


def needs(disk: str = "local-lvm", node: str | None = None, gpus: tuple[int, ...] = (), mem_mb: int = 2048) -> Needs:
    return Needs(node, frozenset(gpus), ((disk, "rootdir"),), disk, mem_mb)


GPUS = {"pve1": frozenset({0, 1}), "pve2": frozenset(), "pve3": frozenset({0})}


def placed(guests, c, members=None):
    return {k: p.node for k, p in place(guests, c, members, lambda n: GPUS.get(n, frozenset())).items()}


def test_a_new_root_goes_to_the_member_with_the_most_free_memory():
    found = place([Guest("ct900", None, needs())], cluster({"pve1": 10, "pve2": 30, "pve3": 20}), None, lambda n: GPUS[n])
    assert found["ct900"].node == "pve2"
    assert "the most free memory" in found["ct900"].why and "30.0 GiB free" in found["ct900"].why


def test_ties_go_to_the_first_name_and_memory_placed_in_the_plan_counts():
    c = cluster({"pve1": 20, "pve2": 20, "pve3": 20})
    guests = [Guest(f"ct{i}", None, needs(mem_mb=8192)) for i in (900, 901, 902, 903)]
    assert placed(guests, c) == {"ct900": "pve1", "ct901": "pve2", "ct902": "pve3", "ct903": "pve1"}


def test_a_guest_on_the_host_stays_where_it_is():
    c = cluster({"pve1": 1, "pve2": 60, "pve3": 1})
    found = place([Guest("ct900", None, needs(), here="pve3")], c, None, lambda n: GPUS[n])
    assert found["ct900"].node == "pve3" and found["ct900"].here == "pve3" and "where it is" in found["ct900"].why


def test_the_configs_node_wins_and_a_changed_one_is_said():
    c = cluster({"pve1": 1, "pve2": 60, "pve3": 1})
    found = place([Guest("ct900", None, needs(node="pve3")), Guest("ct901", None, needs(node="pve1"), here="pve2")], c,
                  None, lambda n: GPUS[n])
    assert (found["ct900"].node, found["ct901"].node, found["ct901"].here) == ("pve3", "pve1", "pve2")
    assert found["ct901"].why == "the config places it on pve1"


def test_a_linked_clone_sits_with_its_template_even_on_shared_storage():
    c = cluster({"pve1": 1, "pve2": 60, "pve3": 1}, ceph=True)
    linked = Needs(None, frozenset(), (("ceph", "images"),), "ceph", 2048, linked=True)
    found = place([Guest("vm9000", None, needs("ceph"), here="pve1"), Guest("vm9001", "vm9000", linked),
                   Guest("vm1001", "vm9000", needs("ceph"))], c, None, lambda n: GPUS[n])
    assert found["vm9001"].node == "pve1" and "with its parent vm9000 (a linked clone of it)" in found["vm9001"].why
    assert found["vm1001"].node == "pve2"                              # a full clone from shared storage goes across
    assert Needs.of(linked.to_json()) == linked and "linked" not in needs().to_json()


def test_a_template_is_placed_where_its_linked_clones_must_go():
    c = cluster({"pve1": 1, "pve2": 60, "pve3": 1}, ceph=True)
    linked = Needs("pve3", frozenset(), (("ceph", "images"),), "ceph", 2048, linked=True)
    assert placed([Guest("vm9000", None, needs("ceph")), Guest("vm9001", "vm9000", linked)], c) == \
        {"vm9000": "pve3", "vm9001": "pve3"}


def test_a_clone_sits_with_a_parent_on_local_storage():
    c = cluster({"pve1": 1, "pve2": 60, "pve3": 1})
    found = place([Guest("ct900", None, needs(), here="pve1"), Guest("ct902", "ct900", needs())], c, None,
                  lambda n: GPUS[n])
    assert found["ct902"].node == "pve1" and "with its parent ct900 (storage local-lvm is local)" in found["ct902"].why


def test_a_clone_of_a_parent_on_shared_storage_is_placed_by_memory():
    c = cluster({"pve1": 1, "pve2": 60, "pve3": 1}, ceph=True)
    assert placed([Guest("ct900", None, needs("ceph"), here="pve1"), Guest("ct902", "ct900", needs("ceph"))], c) == \
        {"ct900": "pve1", "ct902": "pve2"}


def test_a_gpu_layer_goes_only_where_its_gpus_are_and_its_template_is_made_there():
    """900 -> 901 (GPUs 0,1) -> 920 -> 950 (GPUs 0,1); 900 -> 902: GPUs 0 and 1 are on pve1 only, so the whole GPU chain
    and the base it hangs from go there, though pve2 has more free memory."""
    c = cluster({"pve1": 5, "pve2": 60, "pve3": 30})
    guests = [Guest("ct900", None, needs()), Guest("ct901", "ct900", needs(gpus=(0, 1))),
              Guest("ct902", "ct900", needs()), Guest("ct920", "ct901", needs(gpus=(0, 1))),
              Guest("ct950", "ct920", needs(gpus=(0, 1)))]
    found = place(guests, c, None, lambda n: GPUS[n])
    assert {k: p.node for k, p in found.items()} == {k: "pve1" for k in found}
    assert "where the guests built from it go" in found["ct900"].why


def test_no_member_fits_says_why_for_each():
    c = cluster({"pve1": 5, "pve2": 60, "pve3": 30}, offline=("pve1",))
    found = place([Guest("ct901", None, needs(gpus=(1,)))], c, None, lambda n: GPUS[n])
    assert found["ct901"].node is None
    assert found["ct901"].why == "no member can take it: pve1 is offline; pve2 has no GPU 1; pve3 has no GPU 1"


def test_offline_members_and_members_not_declared_take_no_new_guest():
    c = cluster({"pve1": 5, "pve2": 60, "pve3": 30}, offline=("pve2",))
    assert placed([Guest("ct900", None, needs())], c) == {"ct900": "pve3"}
    assert placed([Guest("ct900", None, needs())], c, members=["pve1"]) == {"ct900": "pve1"}


def test_a_member_without_the_storage_takes_no_guest_that_needs_it():
    c = cluster({"pve1": 5, "pve2": 60, "pve3": 30})
    no_lvm = {n: f if n != "pve2" else NodeFacts(n, True, f.maxmem, f.mem, {"local": LOCAL["local"]})
              for n, f in c.nodes.items()}
    assert placed([Guest("ct900", None, needs())], ClusterFacts(no_lvm)) == {"ct900": "pve3"}


def test_the_listing_gives_members_memory_and_storages():
    items = [{"type": "node", "node": "pve1", "status": "online", "maxmem": 8 * GIB, "mem": 2 * GIB},
             {"type": "node", "node": "pve2", "status": "offline"},
             {"type": "storage", "node": "pve1", "storage": "local", "content": "iso,vztmpl", "shared": 0,
              "status": "available"},
             {"type": "storage", "node": "pve1", "storage": "ceph", "content": "images", "shared": 1, "status": "available"},
             {"type": "lxc", "node": "pve1", "vmid": 900}]
    c = parse_cluster(items)
    assert c.online() == ["pve1"] and c.nodes["pve1"].free_mem == 6 * GIB and not c.nodes["pve2"].online
    assert c.nodes["pve1"].has_storage("local", "vztmpl") and not c.nodes["pve1"].has_storage("local", "rootdir")
    assert c.shared("ceph") and not c.shared("local")


def test_without_a_member_that_has_its_storage_it_goes_where_it_could_and_its_checks_say_what_to_add():
    """Storage content can be added (host:storage in the same run, or a person): the member is chosen anyway, and the
    build's checks before any write name the fix; GPUs cannot be added, so they stay a hard rule."""
    c = cluster({"pve1": 5, "pve2": 60})
    found = place([Guest("vm9000", None, Needs(None, frozenset(), (("local", "import"),), "local-lvm", 2048))], c,
                  None, lambda n: GPUS[n])
    assert found["vm9000"].node == "pve2"
    assert "no member has what it needs yet (pve1 has no storage local with import content; pve2 has" in found["vm9000"].why


def test_the_cluster_audit_finds_what_a_real_cluster_refuses():
    from .audit import cluster_refused

    log = [("POST", "/api2/json/nodes/pve1/lxc", b"vmid=900&ostemplate=local%3Avztmpl%2Fa.tar.zst&rootfs=local-lvm%3A8"),
           ("POST", "/api2/json/nodes/pve1/lxc/900/clone", b"newid=901&target=pve2&storage=ceph"),
           ("POST", "/api2/json/nodes/pve2/lxc", b"vmid=700&ostemplate=local%3Avztmpl%2Fb.tar.zst&rootfs=ceph%3A8"),
           ("POST", "/api2/json/nodes/pve2/storage/local/download-url", b"content=vztmpl&filename=c.tar.zst&url=x"),
           ("POST", "/api2/json/nodes/pve2/lxc", b"vmid=701&ostemplate=local%3Avztmpl%2Fc.tar.zst&rootfs=ceph%3A8"),
           ("POST", "/api2/json/nodes/pve2/lxc/701/clone", b"newid=702&target=pve3&storage=ceph")]
    found = cluster_refused(log, {"ceph"}, {"local:vztmpl/a.tar.zst"})
    assert len(found) == 2, found
    assert "lxc/900/clone target=pve2: the source's disk is on local-lvm, not shared" in found[0]
    assert "local:vztmpl/b.tar.zst is on pve2's own local, where nothing put it" in found[1]
