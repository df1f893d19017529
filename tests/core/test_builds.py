"""The layer graph as incremental builds, against fakepve over real HTTPS with proxmoxer."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl

from .conftest import NODE, Checkout

ALL = ("ct900", "ct901", "ct902", "ct910", "ct920", "ct950")


def creations(writes: list[tuple[str, str]]) -> list[int]:
    """CTIDs created (POST lxc) or cloned (POST lxc/<parent>/clone: the new id is in the body, so use order)."""
    out = []
    for method, path in writes:
        if method == "POST" and path == f"{NODE}/lxc":
            out.append(900)
        m = re.fullmatch(rf"{NODE}/lxc/(\d+)/clone", path)
        if method == "POST" and m:
            out.append(int(m.group(1)))
    return out


def bakes(co: Checkout, since: int) -> set[int]:
    """Guests whose config was written since the mark (every bake and update ends with that write)."""
    pattern = rf"{NODE}/lxc/(\d+)/config"
    return {int(m.group(1)) for meth, p in co.writes(since) if meth == "PUT" and (m := re.fullmatch(pattern, p))}


def test_first_build_calls_in_dependency_order(checkout: Checkout):
    result = checkout.doit()
    assert result.rc == 0, result.output
    assert result.outcomes() == dict.fromkeys(ALL, "built")
    writes = checkout.writes()
    # parents are snapshotted before a child is cloned from them
    order = [p for m, p in writes if m == "POST" and (p.endswith("/clone") or p.endswith("/snapshot") or p == f"{NODE}/lxc")]
    assert order.index(f"{NODE}/lxc") < order.index(f"{NODE}/lxc/900/snapshot") < order.index(f"{NODE}/lxc/900/clone")
    assert order.index(f"{NODE}/lxc/901/snapshot") < order.index(f"{NODE}/lxc/901/clone")
    assert order.index(f"{NODE}/lxc/920/snapshot") < order.index(f"{NODE}/lxc/920/clone")
    for ctid, snap in ((900, "base-snapshot"), (901, "gpu-snapshot"), (902, "docker-snapshot"), (920, "vllm-base-snapshot")):
        assert snap in checkout.ct(ctid).snapshots
        assert checkout.ct(ctid).status == "stopped"
    for ctid in (910, 950):
        assert checkout.ct(ctid).status == "running"
        assert not checkout.ct(ctid).snapshots
    for ctid in (900, 901, 902, 910, 920, 950):
        tags = checkout.tags(ctid)
        assert "phoenix" in tags and "phx-building" not in tags
        assert any(t.startswith("phx-id-") for t in tags)
    assert checkout.ct(950).config["memory"] == 40960 and checkout.ct(950).config["cores"] == 8
    assert checkout.ct(950).config["rootfs"].endswith("size=128G")
    # a half-built guest never starts with the node: onboot is held at 0 until the record is written
    assert [str(checkout.ct(c).config.get("onboot")) for c in (900, 950)] == ["0", "1"]  # as configured
    configure, *_, record = [dict(parse_qsl(b.decode())) for m, p, b in checkout.pve.requests
                             if m == "PUT" and p == f"{NODE}/lxc/950/config"]
    assert str(configure["onboot"]) == "0" and "phx-building" in configure["tags"]
    assert sorted(record) == ["description", "onboot", "tags"] and "phx-id-" in record["tags"]
    assert "target is the SIMULATED Proxmox host" in result.output
    last = result.last_run
    assert last["target"] == "sim" and last["api_requests"] > 0
    assert set(last["tasks"]) == set(ALL) and all(t["identity"] for t in last["tasks"].values())


def test_second_run_is_a_noop_with_1_request(built: Checkout):
    """The README's promise: a run with nothing to do lists the host once, and that is all."""
    mark = built.mark()
    result = built.doit()
    assert result.rc == 0
    assert built.writes(mark) == []
    assert [(m, p) for m, p, _ in built.pve.requests[mark:]] == [("GET", "/api2/json/cluster/resources")]
    assert result.last_run["api_requests"] == 1
    assert 0 < result.last_run["api_seconds"] < result.last_run["wall_seconds"]
    assert result.outcomes() == dict.fromkeys(ALL, "up-to-date")
    assert "nothing to do" in result.output
    # a no-op decides from the cached layers alone: the validated estate is never unpickled
    assert "estate" not in result.run.__dict__
    # and it lists the host with the standard library's GET: Pve (requests, proxmoxer) is never made
    assert "pve" not in result.run.__dict__ and result.run.counters.retries == 0


def test_vllm_feature_change_rebakes_920_and_950_only(built: Checkout):
    script = built.root / "images" / "features" / "vllm.sh"
    script.write_text(script.read_text() + "\n# pin a newer vLLM\n")
    plan = built.doit("plan")
    assert re.search(r"ct920\s+rebuild: feature vllm changed", plan.output), plan.output
    assert re.search(r"ct950\s+follows \(parent ct920 rebuilds\)", plan.output), plan.output
    for ctid in ("ct900", "ct901", "ct902", "ct910"):
        assert re.search(rf"{ctid}\s+up-to-date", plan.output)
    mark = built.mark()
    result = built.doit()
    assert result.rc == 0, result.output
    assert bakes(built, mark) == {920, 950}
    assert result.outcomes() == {"ct900": "up-to-date", "ct901": "up-to-date", "ct902": "up-to-date",
                                 "ct910": "up-to-date", "ct920": "built", "ct950": "built"}
    assert built.doit().outcomes() == dict.fromkeys(ALL, "up-to-date")


def test_a_new_vllm_lock_rebakes_920_and_950_only_and_goes_with_the_feature(built: Checkout):
    lock = built.root / "images" / "locks" / "vllm-0.10.1.1-py312.txt"
    lock.write_text(lock.read_text().replace("\nfastapi==", "\n# relocked\nfastapi==", 1))
    plan = built.doit("plan")
    assert re.search(r"ct920\s+rebuild: file vllm-0.10.1.1-py312.txt changed", plan.output), plan.output
    assert re.search(r"ct950\s+follows \(parent ct920 rebuilds\)", plan.output), plan.output
    mark = built.mark()
    result = built.doit()
    assert result.rc == 0, result.output
    assert bakes(built, mark) == {920, 950}
    runs = [json.loads(line) for line in (built.root / ".cache" / "sim" / "runs.jsonl").read_text().splitlines()]
    vllm = [r for r in runs if r.get("op") == "run_script" and r.get("name") == "vllm.sh"][-1]
    assert vllm["files"] == {lock.name: hashlib.sha256(lock.read_bytes()).hexdigest()}   # delivered with the script
    assert built.doit().outcomes() == dict.fromkeys(ALL, "up-to-date")


def test_memory_change_is_one_config_update_and_no_rebuild(built: Checkout):
    built.edit_guest(950, memory_mb=49152)
    plan = built.doit("plan")
    assert re.search(r"ct950\s+update: memory 40960 -> 49152 MB", plan.output), plan.output
    mark = built.mark()
    result = built.doit()
    assert result.rc == 0, result.output
    assert built.writes(mark) == [("PUT", f"{NODE}/lxc/950/config")]
    assert built.ct(950).config["memory"] == 49152
    assert result.outcomes()["ct950"] == "updated"
    assert all(v == "up-to-date" for k, v in result.outcomes().items() if k != "ct950")


def test_plan_reads_a_record_only_when_the_listing_cannot_say_why(built: Checkout):
    built.edit_guest(950, onboot=False)  # not in the listing: only the record in the description says what changed
    mark = built.mark()
    plan = built.doit("plan", "ct950")
    assert re.search(r"ct950\s+update: onboot 1 -> 0$", plan.output, re.M), plan.output
    # the layer and its ancestors only; one listing and one record read, nothing written
    assert re.findall(r"^ct(\d+) ", plan.output, re.M) == ["900", "901", "920", "950"]
    assert [(m, p) for m, p, _ in built.pve.requests[mark:]] == [("GET", "/api2/json/cluster/resources"),
                                                                 ("GET", f"{NODE}/lxc/950/config")]
    mark = built.mark()
    result = built.doit()
    assert result.rc == 0 and result.outcomes()["ct950"] == "updated", result.output
    assert built.writes(mark) == [("PUT", f"{NODE}/lxc/950/config")]
    assert built.ct(950).config["onboot"] in (0, "0")


def test_forget_forces_rebake_of_layer_and_children(built: Checkout):
    result = built.doit("forget", "ct920")
    assert result.rc == 0 and "phoenix: ct920 will be rebuilt at the next run, with everything built on it\n" in \
        result.output, result.output
    mark = built.mark()
    result = built.doit()
    assert result.rc == 0, result.output
    assert bakes(built, mark) == {920, 950}
    assert built.doit().outcomes() == dict.fromkeys(ALL, "up-to-date")


def test_forget_of_several_says_them(built: Checkout):
    result = built.doit("forget", "ct910", "ct950")
    assert "phoenix: ct910, ct950 will be rebuilt at the next run, with everything built on them\n" in result.output


def test_forget_without_a_task_forces_nothing(built: Checkout):
    result = built.doit("forget")
    assert "pass task name" in result.output
    assert built.doit().outcomes() == dict.fromkeys(ALL, "up-to-date")


def test_target_task_builds_only_it_and_its_stale_ancestors(checkout: Checkout):
    result = checkout.doit("-n", "4", "ct910")
    assert result.rc == 0, result.output
    assert {c.vmid for c in checkout.pve.cts} == {900, 902, 910}
    # only these are the run's: 902 never waits for a clone of 901, which outranks it but is not asked for
    assert result.run.scope == {"ct900", "ct902", "ct910"}
    assert result.last_run["wall_seconds"] < 3


def test_guest_deleted_by_hand_is_rebuilt_and_its_children_follow(built: Checkout):
    built.pve.ct(950).status = "stopped"
    built.pve.cts.remove(built.pve.ct(950))
    mark = built.mark()
    result = built.doit()
    assert result.rc == 0
    assert result.outcomes()["ct950"] == "built"
    assert bakes(built, mark) == {950}


def test_fresh_checkout_against_built_host_rebuilds_nothing(built: Checkout):
    # a new clone: no doit database, no forced list, no logs; only the simulated host's own state
    for path in built.cache.iterdir():
        if path.name != "sim":
            if path.is_dir():
                import shutil
                shutil.rmtree(path)
            else:
                path.unlink()
    built.stop_sim()  # and the simulator restarts from its saved state
    mark_requests = 0
    result = built.doit()
    assert result.rc == 0
    assert result.outcomes() == dict.fromkeys(ALL, "up-to-date")
    assert built.writes(mark_requests) == []


def test_identity_changed_by_hand_is_rebuilt(built: Checkout):
    ct = built.ct(902)
    ct.config["tags"] = ";".join(t for t in ct.config["tags"].split(";") if not t.startswith("phx-id-")) + ";phx-id-0000"
    result = built.doit()
    assert result.outcomes()["ct902"] == "built" and result.outcomes()["ct910"] == "built"
    assert result.outcomes()["ct920"] == "up-to-date"


def test_parallel_run_gives_the_same_host_as_a_serial_one(tmp_path):
    results = {}
    for n in ("1", "4"):
        co = Checkout(tmp_path / f"n{n}")
        try:
            result = co.doit("-n", n)
            assert result.rc == 0, result.output
            results[n] = {ct.vmid: (ct.status, sorted(ct.snapshots), {k: v for k, v in ct.config.items()
                                                                       if k not in ("tags", "description", "net0", "digest")})
                          for ct in co.pve.cts}
            assert co.doit("-n", n).outcomes() == dict.fromkeys(ALL, "up-to-date")
        finally:
            co.stop_sim()
    assert results["1"] == results["4"]


def test_info_shows_deps_and_why(built: Checkout):
    built.edit_guest(950, cores=12)
    result = built.doit("info", "ct950")
    assert "task_dep" in result.output and "ct920" in result.output
    assert "ct950: update (cores 8 -> 12)" in result.output
    listing = built.doit("list")
    assert re.search(r"ct950\s+vllmQwen3Coder: app, clone of ct920", listing.output)
    assert re.search(r"ct900\s+BaseTemplate: template, from ubuntu-24.04", listing.output)


def test_missing_os_template_is_downloaded_through_the_api(checkout: Checkout):
    volumes = checkout.pve.storages["local"]["volumes"]
    volumes.pop("vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst")
    result = checkout.doit("ct900")
    assert result.rc == 0, result.output
    assert ("POST", f"{NODE}/storage/local/download-url") in checkout.writes()
    assert "download ubuntu-24.04-standard_24.04-2_amd64.tar.zst into local" in result.output
    assert "vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst" in volumes


def test_template_parent_gives_linked_clones_and_is_rebuilt_after_them(checkout: Checkout):
    checkout.edit_guest(902, template_snapshot_name=None, convert_to_template=True)
    result = checkout.doit()
    assert result.rc == 0, result.output
    assert checkout.ct(902).template and not checkout.ct(902).snapshots
    assert "linked clone of template ct902" in result.output
    clone = next(body for m, p, body in checkout.pve.requests if m == "POST" and p.endswith("/lxc/902/clone"))
    assert b"full=0" in clone
    script = checkout.root / "images" / "features" / "docker.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    mark = checkout.mark()
    result = checkout.doit()
    assert result.rc == 0, result.output
    deletes = [p for m, p in checkout.writes(mark) if m == "DELETE"]
    # the linked clone holds the template's base volume: it goes first, then the template
    assert deletes == [f"{NODE}/lxc/910", f"{NODE}/lxc/902"]
    assert result.outcomes()["ct902"] == "built" and result.outcomes()["ct910"] == "built"


def test_damaged_estate_cache_is_rebuilt(built: Checkout):
    (built.cache / "model.json").write_bytes(b"not json")
    result = built.doit()
    assert result.rc == 0 and result.outcomes() == dict.fromkeys(ALL, "up-to-date")
    built.edit_guest(950, cores=10)  # a config change is never hidden by the cache
    assert built.doit().outcomes()["ct950"] == "updated"



def test_bakes_that_need_a_missing_secret_at_once_get_one_placeholder(checkout: Checkout):
    """`doit -n 4` bakes Portainer containers side by side; each asks the run for the same secret."""
    import io
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from phoenix.runtime import Run

    out = io.StringIO()
    run = Run(checkout.root, cache_dir=checkout.cache, out=out)
    start = threading.Barrier(8)

    def ask(_: int) -> dict[str, str]:
        start.wait()
        return run.secrets(("portainer_password",), required=("portainer_password",))

    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(ask, range(8)))
    assert len({v["portainer_password"] for v in values}) == 1
    assert out.getvalue().count("created a placeholder secret") == 1, out.getvalue()


def test_tags_and_protection_set_by_hand_survive_updates_and_rebuilds(built: Checkout, monkeypatch):
    ct = built.ct(950)
    ct.config["tags"] = ct.config["tags"] + ";prod"
    ct.config["protection"] = 1
    built.edit_guest(950, memory_mb=49152)
    result = built.doit()
    assert result.rc == 0 and result.outcomes()["ct950"] == "updated", result.output
    assert "prod" in built.tags(950) and str(built.ct(950).config["protection"]) == "1"
    monkeypatch.setenv("PHOENIX_DESTROY_PROTECTED", "950")  # the user allows the rebuild of the protected guest
    result = built.doit("forget", "ct950")
    result = built.doit()
    assert result.rc == 0 and result.outcomes()["ct950"] == "built", result.output
    assert "prod" in built.tags(950) and str(built.ct(950).config["protection"]) == "1"
    built.edit_guest(950, tags=["gpu"])  # a tag Phoenix sets is Phoenix's to remove again; the hand-set one stays
    built.doit()
    built.edit_guest(950, tags=[])
    built.doit()
    assert "gpu" not in built.tags(950) and "prod" in built.tags(950)


def test_a_damaged_simulator_state_is_a_note_not_a_traceback(built: Checkout):
    built.stop_sim()
    (built.cache / "sim" / "state.json").write_text("{damaged")
    result = built.doit(own_sim=False)
    assert result.rc == 0 and "Traceback" not in result.output, result.output
    assert set(result.outcomes().values()) == {"built"}  # an empty host: everything is built again
    assert "sim/state.json is damaged" in result.output  # said once, and kept aside


def node_dir(co: Checkout, path: str) -> Path:
    """A host directory of the simulated node (its file system is .cache/sim/node-fs)."""
    d = co.root / ".cache" / "sim" / "node-fs" / path.lstrip("/")
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_a_full_bind_mounted_directory_owned_outside_the_id_map_stops_the_rebuild_first(built: Checkout):
    data = node_dir(built, "/fastData/portainer")          # made by this process: owned outside 100000-165535
    (data / "portainer.db").write_text("the server's database")
    before = built.tags(910)
    built.edit_guest(910, app={"portainer": {"role": "server", "port": 9444}})
    mark = built.mark()
    result = built.doit()
    assert result.rc != 0
    assert (f"host directory /fastData/portainer (bind-mounted at /var/lib/portainer in CT 910, an unprivileged "
            f"container) is owned by {os.getuid()}:{os.getgid()} on the node") in result.output, result.output
    assert "`chown -R 100000:100000 /fastData/portainer`, then rerun" in result.output
    assert "Traceback" not in result.output
    assert bakes(built, mark) == set() and not [w for w in built.writes(mark) if "/lxc/910" in w[1]]  # nothing destroyed
    assert (data / "portainer.db").exists() and data.stat().st_uid == os.getuid()
    assert built.tags(910) == before                          # the old CT 910 is still there, as it was


def test_an_empty_bind_mounted_directory_owned_outside_the_id_map_is_given_to_the_containers_root(built: Checkout):
    data = node_dir(built, "/fastData/portainer")
    built.edit_guest(910, app={"portainer": {"role": "server", "port": 9444}})
    plan = built.doit("plan", "--steps")
    assert "chown 100000:100000 /fastData/portainer on the node (each checked empty first)" in plan.output, plan.output
    result = built.doit()
    assert result.rc == 0, result.output
    assert "gave the empty host directories /fastData/portainer to 100000:100000" in result.output
    runs = [json.loads(line) for line in (built.root / ".cache" / "sim" / "runs.jsonl").read_text().splitlines()]
    assert [(r["paths"], r["owner"]) for r in runs if r["op"] == "give_dirs"] == [(["/fastData/portainer"], 100000)]
    if os.geteuid() == 0:
        assert (data.stat().st_uid, data.stat().st_gid) == (100000, 100000)
        built.edit_guest(910, app={"portainer": {"role": "server", "port": 9445}})
        again = built.doit()
        assert again.rc == 0 and "gave the empty" not in again.output   # now the container's: nothing to give


def test_an_update_in_place_leaves_the_mounts_it_keeps_alone(built: Checkout):
    """Only a bake (or a mount an update adds) checks owners: a memory change must not stop at a directory in use."""
    (node_dir(built, "/fastData/portainer") / "portainer.db").write_text("in use")
    built.edit_guest(910, memory_mb=16384)
    result = built.doit()
    assert result.rc == 0, result.output
    assert result.outcomes()["ct910"] == "updated"


def test_a_change_proxmox_holds_until_a_restart_restarts_the_running_guest_and_says_so(built: Checkout):
    """The README: an in-place update restarts the guest only if Proxmox says the change waits for a restart, and the
    run says so. A running container takes memory at once (the test above: no restart) but holds a new nameserver."""
    assert built.ct(950).status == "running"
    built.edit_guest(950, nameservers=["10.0.0.53"])
    mark = built.mark()
    result = built.doit()
    assert result.rc == 0, result.output
    assert built.writes(mark) == [("PUT", f"{NODE}/lxc/950/config"), ("POST", f"{NODE}/lxc/950/status/reboot")]
    assert "restart: Proxmox applies nameserver only at the next start" in result.output, result.output
    assert built.ct(950).config["nameserver"] == "10.0.0.53" and not built.ct(950).pending
    assert built.ct(950).status == "running" and result.outcomes()["ct950"] == "updated"
    assert all(v == "up-to-date" for k, v in result.outcomes().items() if k != "ct950")


def test_last_run_json_has_exactly_the_readme_fields(built: Checkout):
    """`.cache/last-run.json` as the README gives it: target, api_requests, api_seconds, wall_seconds,
    portainer_requests and, per task, outcome (built|updated|up-to-date|failed), seconds and identity."""
    built.edit_guest(950, memory_mb=49152)
    result = built.doit()
    last = result.last_run
    assert set(last) == {"target", "api_requests", "api_seconds", "wall_seconds", "interrupted", "portainer_requests",
                         "tasks"}, last
    assert last["interrupted"] is False
    assert last["target"] == "sim" and isinstance(last["api_requests"], int) and last["portainer_requests"] == 0
    assert all(isinstance(last[k], (int, float)) and last[k] >= 0 for k in ("api_seconds", "wall_seconds"))
    assert set(last["tasks"]) == set(ALL)
    for task in last["tasks"].values():
        assert set(task) == {"outcome", "seconds", "identity"} and isinstance(task["seconds"], (int, float)), task
        assert re.fullmatch(r"[0-9a-f]{16}", task["identity"]), task
    assert result.outcomes() == {**dict.fromkeys(ALL, "up-to-date"), "ct950": "updated"}
    assert re.search(r"^phoenix: 0 built, 1 updated, 5 up-to-date, 0 failed; \d+ API requests; [\d.]+s \(target: sim\)$",
                     result.output, re.M), result.output


def test_a_run_that_writes_takes_the_hosts_lease_first_and_releases_it_at_the_end(checkout: Checkout):
    """The README: a run about to write takes the lease (the phoenix-lease pool) before its first write and releases
    it at the end, a failed run too; `doit plan` and a run with nothing to do never take it."""
    mark = checkout.mark()
    assert checkout.doit().rc == 0
    requests = [(m, p) for m, p, _ in checkout.pve.requests[mark:] if m != "GET"]
    assert requests[0] == ("POST", "/api2/json/pools"), requests[:3]  # the lease before the first write
    assert requests[-1] == ("DELETE", "/api2/json/pools/phoenix-lease"), requests[-3:]
    assert "phoenix-lease" not in checkout.pve.pools
    for args in (("plan",), ()):
        mark = checkout.mark()
        assert checkout.doit(*args).rc == 0 and checkout.lease_writes(mark) == []
    checkout.edit_guest(950, memory_mb=49152)
    checkout.pve.fail("PUT", f"{NODE}/lxc/950/config", 500, "unexpected error", times=10)
    mark = checkout.mark()
    assert checkout.doit().rc == 1
    assert checkout.lease_writes(mark)[-1] == ("DELETE", "/api2/json/pools/phoenix-lease")
    assert "phoenix-lease" not in checkout.pve.pools


def test_plan_steps_shows_the_calls_of_a_build_and_the_checks_it_would_fail(built: Checkout):
    """The README: `doit plan --steps ct950` is the plan with the exact calls each build would make and the checks it
    would fail; it changes nothing."""
    built.edit_guest(950, memory_mb=49152)
    plan = built.doit("plan", "--steps", "ct950")
    assert plan.rc == 0, plan.output
    assert re.search(r"^ct950\s+update: memory 40960 -> 49152 MB\n    update in place \(memory 40960 -> 49152 MB\): "
                     r"PUT /nodes/pve1/lxc/950/config  .*memory=49152", plan.output, re.M), plan.output
    built.edit_guest(950, storage_pool="nowhere", memory_mb=40960)
    mark = built.mark()
    plan = built.doit("plan", "--steps", "ct950")
    assert plan.rc == 1, plan.output
    assert re.search(r"^ct950\s+rebuild: .*\n    check failed: storage 'nowhere' \(for its root file system\) "
                     "does not exist on the node", plan.output, re.M), plan.output
    assert "DELETE" not in plan.output  # no step is shown for a build that would not start
    assert built.writes(mark) == [] and built.lease_writes(mark) == []


def test_secrets_reach_the_simulated_record_by_name_never_by_value(checkout: Checkout):
    """The README: on the simulated host each operation is recorded in .cache/sim/runs.jsonl with secret names only;
    secrets are never on a command line or in a log."""
    names = ("docker_token", "portainer_password", "vllm_api_key", "hf_token")
    for name in names:
        path = checkout.root / "etc" / f"phoenix_{name}.conf"
        path.write_text(f"SeCrEt-{name}-0451\n")
        path.chmod(0o600)
    result = checkout.doit()
    assert result.rc == 0, result.output
    assert "placeholder" not in result.output  # the files given were used
    runs = [json.loads(line) for line in (checkout.cache / "sim" / "runs.jsonl").read_text().splitlines()]
    said = {s for r in runs if r.get("op") == "run_script" for s in r.get("secrets", [])}
    assert said == set(names), said
    assert "SeCrEt-" not in result.output
    for path in checkout.cache.rglob("*"):
        if path.is_file():
            assert b"SeCrEt-" not in path.read_bytes(), path


def test_doit_list_gives_every_layer_its_name_role_parent_and_scripts_without_asking_the_host(built: Checkout):
    """The README: `doit list`, every layer with a one-line doc: name, role, parent, scripts."""
    mark = built.mark()
    listing = built.doit("list")
    assert listing.rc == 0, listing.output
    rows = dict(re.findall(r"^(ct\d+)\s+(.+)$", listing.output, re.M))
    assert rows == {
        "ct900": "BaseTemplate: template, from ubuntu-24.04-standard_24.04-2_amd64.tar.zst; runs base_setup",
        "ct901": "BaseTemplateGPU: template, clone of ct900; runs nvidia",
        "ct902": "BaseTemplateDocker: template, clone of ct900; runs docker",
        "ct910": "Portainer: app, clone of ct902; runs phoenix_hypervisor_lxc_910.sh",
        "ct920": "BaseTemplateVLLM: template, clone of ct901; runs vllm",
        "ct950": "vllmQwen3Coder: app, clone of ct920; runs phoenix_hypervisor_lxc_950.sh",
    }, listing.output
    assert built.pve.requests[mark:] == []  # a listing of the config: the host is not asked


def test_a_guest_being_built_carries_phx_building_and_the_runs_id_until_its_record(checkout: Checkout):
    """The README: guests being built carry phx-building and phx-run-<id> (the run's), so no other run destroys them;
    the record that ends the bake replaces both."""
    result = checkout.doit()
    assert result.rc == 0, result.output
    for ctid in (900, 950):
        tags = [dict(parse_qsl(b.decode())).get("tags") for m, p, b in checkout.pve.requests
                if (m, p) in (("PUT", f"{NODE}/lxc/{ctid}/config"), ("POST", f"{NODE}/lxc"))
                and dict(parse_qsl(b.decode())).get("vmid", str(ctid)) == str(ctid)]
        first, last = set(tags[0].split(";")), set(tags[-1].split(";"))
        assert {"phoenix", "phx-building", f"phx-run-{result.run.id}"} <= first, tags
        assert not {t for t in last if t.startswith(("phx-building", "phx-run-"))} and "phoenix" in last, tags
