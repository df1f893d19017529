"""Faults injected with fakepve: nothing half-built is recorded as built, and a rerun converges."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from phoenix.sim.host import shared

from .conftest import ALL_TASKS, NODE, Checkout


def assert_converged(co: Checkout) -> None:
    result = co.doit()
    assert result.rc == 0, result.output
    again = co.doit()
    assert again.outcomes() == dict.fromkeys(ALL_TASKS, "up-to-date"), again.output
    assert co.writes(co.mark()) == []


def test_task_error_mid_bake_is_not_recorded_and_rerun_converges(checkout: Checkout):
    checkout.pve.fail("POST", f"{NODE}/lxc/920/snapshot", error="snapshot_feature_not_available", times=1)
    result = checkout.doit()
    assert result.rc == 1
    assert "TASK ERROR" in result.output or "snapshot feature is not available" in result.output
    assert "task log" in result.output  # the task's own log is shown
    assert result.outcomes()["ct920"] == "failed"
    assert "ct950" not in result.outcomes() or result.outcomes()["ct950"] != "built"
    tags = checkout.tags(920)
    assert "phx-building" in tags and not any(t.startswith("phx-id-") for t in tags)
    assert checkout.pve.ct(950) is None
    plan = checkout.doit("plan")
    assert "ct920  rebuild: an earlier bake did not finish" in plan.output
    assert_converged(checkout)


def test_locked_config_update_is_retried(built: Checkout):
    built.edit_guest(950, memory_mb=45056)
    built.pve.fail("PUT", f"{NODE}/lxc/950/config", error="locked", times=2)
    result = built.doit()
    assert result.rc == 0, result.output
    assert built.ct(950).config["memory"] == 45056
    assert result.run.counters.retries == 2


def test_locked_start_task_is_retried(checkout: Checkout):
    checkout.pve.fail("POST", f"{NODE}/lxc/900/status/start", error="locked", times=1)
    result = checkout.doit("ct900")
    assert result.rc == 0, result.output
    assert result.run.counters.retries >= 1


def test_non_idempotent_call_is_not_retried(checkout: Checkout):
    checkout.pve.fail("POST", f"{NODE}/lxc/900/clone", 500, "unexpected storage error", times=1)
    result = checkout.doit("ct901")
    assert result.rc == 1 and "unexpected storage error" in result.output
    clones = [p for m, p in checkout.writes() if m == "POST" and p.endswith("/900/clone")]
    assert len(clones) == 1
    assert_converged(checkout)


def test_clone_refused_for_a_lock_is_retried_since_nothing_happened(checkout: Checkout):
    checkout.pve.fail("POST", f"{NODE}/lxc/900/clone", 500, "CT is locked (backup)", times=1)
    result = checkout.doit("ct901")
    assert result.rc == 0, result.output
    assert result.run.counters.retries == 1


def test_parallel_cold_build_with_real_task_durations(tmp_path):
    # Proxmox locks a clone's source for the whole clone: 901 and 902 (both from 900) must not collide
    co = Checkout(tmp_path / "timed", sim_options={"time_scale": 0.01, "ct_secs": {"create": 20, "clone": 10, "snapshot": 2}})
    try:
        result = co.doit("-n", "4")
        assert result.rc == 0, result.output
        assert set(result.outcomes().values()) == {"built"}
        # 901 clones first: 920 and 950 wait for it, only 910 waits for 902
        clones = [re.search(r"newid=(\d+)", str(body)) for m, p, body in co.pve.requests
                  if m == "POST" and p.endswith("/lxc/900/clone")]
        assert [int(c.group(1)) for c in clones if c] == [901, 902]
        assert co.doit("-n", "4").outcomes() == dict.fromkeys(ALL_TASKS, "up-to-date")
    finally:
        co.stop_sim()


def test_with_n_4_independent_layers_build_at_once_and_clones_of_one_parent_one_at_a_time(tmp_path):
    """The README's `doit -n 4`: independent layers build at the same time (clones from two parents run at once), but
    clones of one parent go one at a time, since Proxmox locks the source of a full clone for the whole copy. Sampled
    from fakepve's own task list while the run goes."""
    import threading

    co = Checkout(tmp_path / "timed", sim_options={"time_scale": 0.01, "ct_secs": {"clone": 60}})  # 0.6 s a clone
    seen: list[tuple[str, ...]] = []  # the sources of the clones running, at each sample
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.append(tuple(sorted(t["id"] for t in list(co.pve.tasklog)
                                     if t["type"] == "vzclone" and t["status"] == "running")))
            time.sleep(0.005)
    try:
        co.pve  # noqa: B018 - started before the sampler reads its task list
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = co.doit("-n", "4")
        finally:
            done.set()
            sampler.join()
        assert result.rc == 0 and set(result.outcomes().values()) == {"built"}, result.output
        assert any(len(set(ids)) >= 2 for ids in seen), sorted(set(seen))  # clones from two parents at once
        # one at a time from one parent: two requests to clone 900, neither refused for the lock and tried again
        assert [p for m, p, _ in co.pve.requests if m == "POST" and p.endswith("/lxc/900/clone")] == [
            f"{NODE}/lxc/900/clone"] * 2
    finally:
        co.stop_sim()


def test_slow_task_times_out_with_an_actionable_error_then_converges(tmp_path):
    co = Checkout(tmp_path / "slow", sim_options={"time_scale": 0.01, "ct_secs": {"snapshot": 500}})
    try:
        hyp = co.root / "etc" / "phoenix_hypervisor_config.json"
        hyp.write_text(hyp.read_text().replace('"token_id": "root@pam!phoenix"',
                                               '"token_id": "root@pam!phoenix", "task_timeout_s": 1'))
        result = co.doit("ct900")
        assert result.rc == 1
        assert "still runs after 1s" in result.output
        assert not any(t.startswith("phx-id-") for t in co.tags(900))
        co.sim.pve.ct_secs["snapshot"] = 0
        hyp.write_text(hyp.read_text().replace(', "task_timeout_s": 1', ""))
        result = co.doit("ct900")
        assert result.rc == 1 and "locked (snapshot) by a task still running" in result.output
        deadline = time.monotonic() + 30
        while any(t["status"] == "running" for t in co.sim.pve.tasklog) and time.monotonic() < deadline:
            time.sleep(0.1)
        result = co.doit("ct900")
        assert result.rc == 0, result.output
        assert any(t.startswith("phx-id-") for t in co.tags(900))
    finally:
        co.stop_sim()


def test_dropped_connections_are_retried_on_reads(built: Checkout):
    built.pve.flaky_network(drop_rate=0.5)
    built.pve._random.seed(7)  # fakepve seeds only at start; this makes the dropped requests repeatable
    try:
        result = built.doit()
    finally:
        built.pve.flaky_network()
    assert result.rc == 0, result.output
    assert result.outcomes() == dict.fromkeys(ALL_TASKS, "up-to-date")
    assert result.run.counters.retries >= 1


def test_dropped_connection_during_a_bake_converges_on_rerun(checkout: Checkout):
    checkout.pve.flaky_network(drop_rate=0.3)
    first = checkout.doit("-n", "4")
    checkout.pve.flaky_network()
    # drops on reads are retried; a drop on a write fails the layer, which is then not recorded
    assert first.rc != 0 or first.run.counters.retries > 0, first.output
    for task, outcome in first.outcomes().items():
        if outcome == "failed":
            assert not any(t.startswith("phx-id-") for t in checkout.tags(int(task[2:]))) if checkout.ct(int(task[2:])) else True
    assert_converged(checkout)


def test_protected_guest_is_never_destroyed_without_the_flag(built: Checkout, monkeypatch):
    built.ct(950).config["protection"] = 1
    script = built.root / "images" / "apps" / "phoenix_hypervisor_lxc_950.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    result = built.doit()
    assert result.rc == 1
    assert "CT 950 has protection set" in result.output and "PHOENIX_DESTROY_PROTECTED=950" in result.output
    assert built.ct(950) is not None and built.ct(950).config["protection"] == 1
    monkeypatch.setenv("PHOENIX_DESTROY_PROTECTED", "950")
    result = built.doit()
    assert result.rc == 0, result.output
    assert result.outcomes()["ct950"] == "built"


def test_foreign_guest_on_a_ctid_is_left_alone(checkout: Checkout):
    checkout.pve.add_ct(910, "handmade", config={"tags": "mine"})
    result = checkout.doit("--continue")
    assert result.rc == 1
    assert "not managed by Phoenix" in result.output
    assert checkout.ct(910).config["hostname"] == "handmade"
    assert checkout.pve.ct(950) is not None  # the rest of the estate is built


def test_simulated_state_survives_between_processes(built: Checkout):
    state = built.cache / "sim" / "state.json"
    built.stop_sim()
    assert state.exists()
    fresh = shared(built.cache / "sim")
    assert fresh is built.sim
    result = built.doit()
    assert result.outcomes() == dict.fromkeys(ALL_TASKS, "up-to-date")


def test_pinned_fingerprint_is_checked(checkout: Checkout):
    import hashlib
    import ssl

    from phoenix.errors import PhoenixError
    from phoenix.pve.client import Pve
    ep = checkout.sim.start()
    der = ssl.PEM_cert_to_DER_cert(Path(str(ep.verify)).read_text())
    right = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    token = ep.secret()
    assert Pve(ep.url, ep.node, ep.token_id, token, fingerprint=right).get("version")["version"]
    wrong = ":".join(["00"] * 32)
    with pytest.raises(PhoenixError, match="cannot reach Proxmox"):
        Pve(ep.url, ep.node, ep.token_id, token, fingerprint=wrong, retries=0).get("version")
    with pytest.raises(PhoenixError, match="cannot reach Proxmox"):  # and no fingerprint: the CA is checked
        Pve(ep.url, ep.node, ep.token_id, token, retries=0).get("version")


@pytest.mark.parametrize("clock", [1.0, 0.01])
def test_tasks_are_polled_on_the_hosts_clock(tmp_path, clock: float):
    """The poll schedule is in host seconds: 20 ms, then 1.3x longer each time, at most 1 s; a simulator whose
    PVE second lasts 10 ms is polled 100 times as often (never more often than every millisecond)."""
    from phoenix.pve.client import Pve
    from phoenix.sim.host import SimHost
    sim = SimHost(tmp_path / "sim", time_scale=0.01, ct_secs={"start": 30})  # a start takes 0.3 s
    ep = sim.start()
    try:
        sim.pve.add_ct(990, node="pve1", status="stopped", config={"hostname": "poll", "memory": 512})
        naps: list[float] = []

        def sleep(seconds: float) -> None:
            naps.append(seconds)
            time.sleep(min(seconds, 0.05))

        pve = Pve(ep.url, ep.node, ep.token_id, ep.secret(), verify=ep.verify, sleep=sleep, clock=clock)
        pve.run("POST", "nodes/pve1/lxc/990/status/start")
        assert sim.pve.ct(990).status == "running"
        want = [max(0.001, 0.02 * 1.3 ** i * clock) for i in range(3)]
        assert naps[:3] == pytest.approx(want)
        assert max(naps) <= max(0.001, 1.0 * clock)
    finally:
        sim.stop()


def test_a_failed_os_template_download_leaves_the_old_layer_standing(built: Checkout):
    """The README: nothing is destroyed before the new build can succeed; a rebuild destroys the old guest as its last
    step before the clone (or the create). A new OS template is downloaded first: if that fails, 900 is still there."""
    path = built.root / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    data["os_templates"]["ubuntu-24.04"] = {
        "volume": "local:vztmpl/ubuntu-24.04-standard_24.04-3_amd64.tar.zst",
        "url": "http://download.proxmox.com/images/system/ubuntu-24.04-standard_24.04-3_amd64.tar.zst"}
    path.write_text(json.dumps(data))
    built.pve.fail("POST", f"{NODE}/storage/local/download-url", 500, "can't connect to download.proxmox.com", times=1)
    mark = built.mark()
    result = built.doit()
    assert result.rc == 1, result.output
    assert "download.proxmox.com" in result.output
    assert not [w for w in built.writes(mark) if w[0] == "DELETE"]  # nothing destroyed
    assert any(t.startswith("phx-id-") for t in built.tags(900))  # the old layer, as built
    mark = built.mark()
    result = built.doit()  # the download works again: 900 and every layer cloned from it are rebuilt
    assert result.rc == 0, result.output
    writes = built.writes(mark)
    download = writes.index(("POST", f"{NODE}/storage/local/download-url"))
    assert download < writes.index(("DELETE", f"{NODE}/lxc/900"))
