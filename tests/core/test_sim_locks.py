"""Locks: the tasks a stopping simulator cuts off release theirs; `unlock`; one simulator per state dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phoenix.pve.client import Pve
from phoenix.sim.dirlock import SimBusy
from phoenix.sim.host import SERVER_FILE, SimHost, served, spawn

from .conftest import REPO, Checkout

TEMPLATE = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
SLOW = ("--time-scale", "0.01", "--task-seconds", "snapshot=3000,clone=3000")  # a snapshot or clone takes 30 s


def create(client: Pve, vmid: int) -> None:
    client.run("POST", "nodes/pve1/lxc", vmid=vmid, ostemplate=TEMPLATE, hostname=f"guest{vmid}", storage="local-lvm")


def sim_command(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phoenix.sim", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def serve(state: Path, *args: str) -> subprocess.Popen:
    return spawn(state, *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def client_of(state: Path) -> Pve:
    found = served(state)
    assert found is not None
    return Pve.of(found[0])


def locks(state: Path) -> dict[int, str | None]:
    """The guests and their locks as a simulator started on the state finds them."""
    host = SimHost(state)
    host.start()
    try:
        return {ct.vmid: ct.lock for ct in host.pve.cts}
    finally:
        host.stop()


def killed_mid_snapshot(state: Path) -> None:
    """A served simulator killed (SIGKILL) while guest 900 takes a snapshot and 901 is cloned to 902."""
    proc = serve(state, *SLOW)
    try:
        client = client_of(state)
        create(client, 900)
        create(client, 901)
        client.call("POST", "nodes/pve1/lxc/900/snapshot", snapname="base")
        client.call("POST", "nodes/pve1/lxc/901/clone", newid=902)
        assert client.get("nodes/pve1/lxc/900/config").get("lock") == "snapshot"
        assert client.get("nodes/pve1/lxc/902/config").get("lock") == "create"
    finally:
        proc.kill()
        proc.communicate(timeout=30)


# ------------------------------------------------------------------ stop


def test_stop_fails_the_running_tasks_and_releases_their_locks(tmp_path: Path):
    notes: list[str] = []
    host = SimHost(tmp_path / "sim", time_scale=0.01, ct_secs={"snapshot": 3000, "clone": 3000}, note=notes.append)
    client = Pve.of(host.start())
    try:
        create(client, 900)
        create(client, 901)
        client.call("POST", "nodes/pve1/lxc/900/snapshot", snapname="base")
        client.call("POST", "nodes/pve1/lxc/901/clone", newid=902, hostname="half")
        assert {ct.vmid: ct.lock for ct in host.pve.cts} == {900: "snapshot", 901: "disk", 902: "create"}
    finally:
        host.stop()
    assert any("stopped with 2 task(s) running" in note for note in notes), notes
    # as a failed task leaves them: no lock, no half-taken snapshot, no half-created clone
    assert {ct.vmid: ct.lock for ct in host.pve.cts} == {900: None, 901: None}
    assert host.pve.ct(900).snapshots == {}
    failed = [t for t in host.pve.tasklog if t["type"] in ("vzsnapshot", "vzclone")]
    assert [t["status"] for t in failed] == ["stopped", "stopped"] and all("simulator stopped" in t["exitstatus"] for t in failed)
    assert locks(host.dir) == {900: None, 901: None}


def test_a_served_simulator_stopped_by_a_signal_releases_the_locks(tmp_path: Path):
    state = tmp_path / "sim"
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc = serve(state, *SLOW)
        client = client_of(state)
        if sig == signal.SIGINT:
            create(client, 900)
        client.call("POST", "nodes/pve1/lxc/900/snapshot", snapname=f"s{int(sig)}")
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "stopped with 1 task(s) running, which failed" in out and "vzsnapshot 900" in out, out
        assert locks(state) == {900: None}


def test_a_task_killed_with_its_simulator_keeps_its_lock_until_unlock(tmp_path: Path):
    """As on PVE: a crash leaves the lock; `unlock` on a state dir nobody serves edits the saved state."""
    state = tmp_path / "sim"
    killed_mid_snapshot(state)
    half = sim_command("unlock", "902", "--state-dir", str(state))
    assert half.returncode == 0 and "guest 902 on the simulated host saved in" in half.stdout
    assert "was half-created (lock 'create'): removed" in half.stdout
    # a clone's source loses its clone lock with the clone; the snapshot's lock stays, as on PVE
    assert locks(state) == {900: "snapshot", 901: None}
    done = sim_command("unlock", "900", "--state-dir", str(state))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"guest 900 on the simulated host saved in {state}: lock 'snapshot' removed" in done.stdout
    assert locks(state) == {900: None, 901: None}
    again = sim_command("unlock", "900", "--state-dir", str(state))
    assert again.returncode == 0 and f"guest 900 on the simulated host saved in {state} is not locked: nothing to do" in again.stdout
    missing = sim_command("unlock", "999", "--state-dir", str(state))
    assert missing.returncode == 1 and "no guest 999 on the simulated host" in missing.stdout


def test_unlock_goes_through_the_served_simulator(tmp_path: Path):
    state = tmp_path / "sim"
    killed_mid_snapshot(state)
    proc = serve(state)
    try:
        client = client_of(state)
        assert client.get("nodes/pve1/lxc/900/config").get("lock") == "snapshot"
        done = sim_command("unlock", "900", "--state-dir", str(state))
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"guest 900 on the simulated host served by process {proc.pid}: lock 'snapshot' removed" in done.stdout
        assert "lock" not in client.get("nodes/pve1/lxc/900/config")  # the server's own host has it unlocked
        client.call("POST", "nodes/pve1/lxc/900/snapshot", snapname="now-possible")
        missing = sim_command("unlock", "999", "--state-dir", str(state))
        assert missing.returncode == 1 and f"no guest 999 on the simulated host served by process {proc.pid}" in missing.stdout
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert locks(state) == {900: None, 901: None}


def test_unlock_waits_for_a_run_that_simulates_the_host(tmp_path: Path):
    state = tmp_path / "sim"
    killed_mid_snapshot(state)
    host = SimHost(state)
    host.start()
    try:
        refused = sim_command("unlock", "900", "--state-dir", str(state))
    finally:
        host.stop()
    assert refused.returncode == 1
    assert f"is in use by another Phoenix run, process {os.getpid()}" in refused.stdout
    assert "Wait for that run to end" in refused.stdout and "Traceback" not in refused.stdout + refused.stderr
    assert locks(state)[900] == "snapshot"  # untouched


# ------------------------------------------------------------------ one simulator per state dir


def test_a_second_simulator_of_one_state_dir_is_refused(tmp_path: Path):
    state = tmp_path / "sim"
    first = SimHost(state)
    first.start()
    cert = (state / "fakepve.crt").stat().st_mtime_ns
    try:
        with pytest.raises(SimBusy) as refused:
            SimHost(state).start()
        message = str(refused.value)
        assert f"in use by another Phoenix run, process {os.getpid()}, with its own in-process simulator" in message
        assert f"serve the host once with `python -m phoenix.sim --state-dir {state}`" in message
        assert refused.value.holder.pid == os.getpid()
        server = sim_command("--state-dir", str(state))
        assert server.returncode == 1 and f"in use by another Phoenix run, process {os.getpid()}" in server.stdout
        assert (state / "fakepve.crt").stat().st_mtime_ns == cert and not (state / SERVER_FILE).exists()
    finally:
        first.stop()
    second = SimHost(state)  # free again once the first has stopped
    second.start()
    second.stop()


def test_a_run_is_refused_while_a_served_simulator_holds_the_state(tmp_path: Path):
    state = tmp_path / "sim"
    proc = serve(state)
    try:
        with pytest.raises(SimBusy, match=f"is served by process {proc.pid} \\(`python -m phoenix.sim`\\)"):
            SimHost(state).start()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def test_a_second_doit_in_the_checkout_is_refused_with_the_holder_named(tmp_path: Path):
    co = Checkout(tmp_path / "phoenix")
    co.sim.start()  # as another doit of this checkout would hold it
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
        done = subprocess.run([sys.executable, "-m", "doit", "ct900"], cwd=co.root, env=env, capture_output=True,
                              text=True, timeout=120)
    finally:
        co.stop_sim()
    out = done.stdout + done.stderr
    assert done.returncode == 1, out  # the README's exit code of a run refused for another run holding the host
    assert "Traceback" not in out
    assert f"in use by another Phoenix run, process {os.getpid()}" in out and "python -m phoenix.sim" in out, out


def test_two_servers_started_at_once_one_serves_the_other_is_refused(tmp_path: Path):
    for attempt in range(3):
        state = tmp_path / f"sim{attempt}"
        procs = [subprocess.Popen([sys.executable, "-m", "phoenix.sim", "--state-dir", str(state)], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (served(state) and any(p.poll() is not None for p in procs)):
                time.sleep(0.05)
            found = served(state)
            assert found is not None
            endpoint, pid = found
            winner = next(p for p in procs if p.pid == pid)
            loser = next(p for p in procs if p.pid != pid)
            out, _ = loser.communicate(timeout=30)
            assert loser.returncode == 1, out
            assert f"served by process {pid}" in out and "Traceback" not in out, out
            # the certificate and token the winner serves with are the ones on disk: clients can reach it
            assert Pve.of(endpoint, None).get("version")["version"]
            assert winner.poll() is None
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                p.communicate(timeout=60)
