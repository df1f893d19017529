"""Which API a run calls: the configured node, or on the simulated host the served simulator or one started now."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .pve.endpoint import Endpoint


def connect(api: Endpoint, state: Path, sim_options: dict[str, Any], say: Callable[[str], None]) -> tuple[Endpoint, Any]:
    """The endpoint to call, and the simulator this run started (to stop at its end), or None.

    state: the simulated host's state dir (.cache/sim). A simulator served by another process for it is used as is;
    otherwise one is started in this process."""
    if not api.simulated:
        return api, None
    from .sim.served import served

    started = None
    elsewhere = served(state)
    if elsewhere:
        ep, pid = elsewhere
        say(f"phoenix: target is the SIMULATED Proxmox host at {ep.url} (fakepve served by process {pid}; state in {state})")
    else:
        from .sim.host import shared

        sim = shared(state, note=lambda text: say(f"phoenix: simulated host: {text}"), **sim_options)
        if sim.endpoint is None:
            started = sim  # started by this run, so stopped (and saved) by it
        ep = sim.start()
        what = "host" if len(sim.nodes) == 1 else f"cluster of {', '.join(sim.nodes)}"
        say(f"phoenix: target is the SIMULATED Proxmox {what} at {ep.url} (fakepve; state in {sim.dir})")
    # the simulator's clock runs time_scale real seconds per PVE second: tasks are polled on it
    return dataclasses.replace(ep, timeout=api.timeout, task_timeout=api.task_timeout, retries=api.retries), started
