"""One run at a time per host: the lease (a `phoenix-lease` pool made through the API) against fakepve over HTTPS."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phoenix import lease as L
from phoenix.pve.client import Pve
from phoenix.sim.host import SimHost


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimHost]:
    host = SimHost(tmp_path / "sim")
    host.start()
    yield host
    host.stop()


def lease(sim: SimHost, run: str, said: list[str], **kwargs) -> L.Lease:
    assert sim.endpoint is not None
    pve = Pve.of(sim.endpoint)
    return L.Lease(lambda: pve, run, said.append, **kwargs)


def plant(sim: SimHost, holder: L.Holder) -> None:
    """A lease left on the host by another run."""
    sim.pve.pools[L.POOL] = set()
    sim.pve.pool_info[L.POOL] = {"comment": L.comment(holder), "storage": set()}


def test_the_comment_round_trips():
    h = L.Holder("ab12cd34", "ci-7", 4242, 123456, 1700000000, 1700000120)
    assert L.parse(L.comment(h)) == h
    assert L.parse("a pool someone made") is None


def test_a_second_run_is_refused_with_the_holder_named(sim: SimHost):
    said: list[str] = []
    first = lease(sim, "aaaa1111", said)
    first.acquire()
    try:
        second = lease(sim, "bbbb2222", said)
        second.host = "another-machine"  # as a run elsewhere would be; its own pid is alive there
        with pytest.raises(L.LeaseHeld, match=r"another Phoenix run is changing this host: run aaaa1111 on .*, pid \d+"):
            second.acquire()
        assert L.parse(sim.pve.pool_info[L.POOL]["comment"]).run == "aaaa1111"
    finally:
        first.release()
    assert L.POOL not in sim.pve.pools


def test_an_expired_lease_is_broken(sim: SimHost):
    plant(sim, L.Holder("dead0001", "elsewhere", 1, 1, int(time.time()) - 600, int(time.time()) - 10))
    said: list[str] = []
    mine = lease(sim, "cccc3333", said)
    mine.acquire()
    assert "breaking the host's lease of run dead0001 on elsewhere (its lease expired)" in said[0]
    assert L.parse(sim.pve.pool_info[L.POOL]["comment"]).run == "cccc3333"
    mine.release()


def test_a_lease_of_a_dead_process_on_this_machine_is_broken_at_once(sim: SimHost):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    me = lease(sim, "x", [])
    plant(sim, L.Holder("dead0002", me.host, int(gone.stdout), 99, int(time.time()), int(time.time()) + 600))
    said: list[str] = []
    mine = lease(sim, "dddd4444", said)
    mine.acquire()
    assert f"(process {int(gone.stdout)} is gone)" in said[0]
    mine.release()


def test_a_live_holder_elsewhere_is_not_broken(sim: SimHost):
    plant(sim, L.Holder("live0003", "elsewhere", 1, 1, int(time.time()), int(time.time()) + 600))
    with pytest.raises(L.LeaseHeld, match="run live0003 on elsewhere"):
        lease(sim, "eeee5555", []).acquire()
    assert L.parse(sim.pve.pool_info[L.POOL]["comment"]).run == "live0003"


def test_a_pool_of_that_name_that_is_not_a_lease_is_left_alone(sim: SimHost):
    sim.pve.pools[L.POOL] = set()
    sim.pve.pool_info[L.POOL] = {"comment": "my own pool", "storage": set()}
    with pytest.raises(L.LeaseHeld, match="is not a Phoenix lease"):
        lease(sim, "ffff6666", []).acquire()
    assert sim.pve.pool_info[L.POOL]["comment"] == "my own pool"


def test_the_lease_is_renewed_and_a_taken_lease_is_noticed(sim: SimHost):
    mine = lease(sim, "abab7777", [], seconds=0.8)
    mine.acquire()
    try:
        first = L.parse(sim.pve.pool_info[L.POOL]["comment"]).expires
        deadline = time.monotonic() + 15  # renewed every seconds/4; a loaded machine may delay the renewing thread
        while time.monotonic() < deadline and L.parse(sim.pve.pool_info[L.POOL]["comment"]).expires <= first:
            time.sleep(0.1)
        assert L.parse(sim.pve.pool_info[L.POOL]["comment"]).expires > first
        plant(sim, L.Holder("thief008", "elsewhere", 1, 1, int(time.time()), int(time.time()) + 600))
        with pytest.raises(L.LeaseLost, match="taken by run thief008 on elsewhere"):
            mine.verify()
        with pytest.raises(L.LeaseLost):
            mine.check()
    finally:
        mine.release()
    assert L.parse(sim.pve.pool_info[L.POOL]["comment"]).run == "thief008"  # not ours: not removed



def test_a_lease_names_the_run_its_machine_and_pid_and_lasts_2_minutes_unless_renewed(sim: SimHost):
    """The README: the pool's comment names the run, its machine and pid; a lease whose run died expires after 2 minutes."""
    import os
    import socket

    mine = lease(sim, "acac9999", [])
    before = int(time.time())
    mine.acquire()
    try:
        holder = L.parse(sim.pve.pool_info[L.POOL]["comment"])
        assert holder is not None and (holder.run, holder.host, holder.pid) == ("acac9999", socket.gethostname(), os.getpid())
        assert L.POOL == "phoenix-lease" and before <= holder.started <= int(time.time())
        assert holder.expires - holder.started == 120
    finally:
        mine.release()
    # a lease left by a run elsewhere, taken 119 s ago, still holds; at 121 s it is broken (on a clock that stands
    # still: a loaded machine must not turn 119 s into 120)
    now = float(int(time.time()))
    plant(sim, L.Holder("dead0010", "elsewhere", 1, 1, int(now) - 119, int(now) - 119 + 120))
    with pytest.raises(L.LeaseHeld, match="run dead0010 on elsewhere"):
        lease(sim, "adad1010", [], clock=lambda: now).acquire()
    plant(sim, L.Holder("dead0011", "elsewhere", 1, 1, int(now) - 121, int(now) - 121 + 120))
    said: list[str] = []
    late = lease(sim, "aeae1111", said, clock=lambda: now)
    late.acquire()
    late.release()
    assert "breaking the host's lease of run dead0011 on elsewhere (its lease expired)" in said[0]
