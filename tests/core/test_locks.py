"""Lock advice must be right: a locked guest is never forced, and the run says which task holds the lock."""

from __future__ import annotations

from pathlib import Path

from phoenix.pve.client import Pve
from phoenix.sim.host import SimHost


def test_the_lock_advice_finds_a_clone_under_its_source(tmp_path: Path):
    """Proxmox lists a clone task under its source CTID: CT 901, locked (create) while it is cloned from 900, is
    locked by a running task, and `pct unlock 901` would be wrong and dangerous advice."""
    from phoenix.kinds.base import Context
    from phoenix.kinds.lxc import explain_lock

    sim = SimHost(tmp_path / "sim", time_scale=0.05, ct_secs={"clone": 40})
    ep = sim.start()
    try:
        sim.pve.add_ct(900, node="pve1", status="stopped", config={"hostname": "base", "memory": 512})
        pve = Pve.of(ep)
        upid = pve.call("POST", "nodes/pve1/lxc/900/clone", newid=901, hostname="gpu", full=1)
        ctx = Context(None, "pve1", lambda: pve, None, None, None, "run", lambda v: False)  # type: ignore[arg-type]
        advice = explain_lock(ctx, 901, "create")
        assert "locked (create) by a clone still running on the node" in advice and upid in advice
        assert "lists a clone under its source, CT 900" in advice and "unlock" not in advice
        pve.wait(upid)
        advice = explain_lock(ctx, 901, "create")  # the task is over: now the lock is a dead one's
        assert "no task is running" in advice
    finally:
        sim.stop()
