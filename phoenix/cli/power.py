"""`phoenix start|stop ID`: a Phoenix guest started or shut down, holding the host's lease like any run that writes."""

from __future__ import annotations

from typing import Any

from ..errors import PhoenixError, UnsafeOperation
from .targets import resolve


def power(run: Any, word: str, action: str) -> str:
    """Start or stop the guest; returns what was done (one line)."""
    res = resolve(run.resources, word)
    if res.vmid is None:
        raise PhoenixError(f"{res.key} is not a guest: only guests start and stop")
    facts = run.view.get(res.vmid)
    if facts is None:
        raise PhoenixError(f"{res.key} is not on the host: build it with `phoenix create {res.vmid}`")
    if not facts.managed:
        raise UnsafeOperation(f"guest {res.vmid} is not Phoenix's (no 'phoenix' tag and record): start or stop it yourself")
    wanted = "running" if action == "start" else "stopped"
    if facts.status == wanted:
        return f"{res.key} ({res.name}) is already {wanted}"
    node = facts.node or run.endpoint.node  # where it is, on a cluster
    path = f"nodes/{node}/{facts.kind}/{res.vmid}/status/" + ("start" if action == "start" else "shutdown")
    with run.holding():
        if action == "start":
            run.pve.run("POST", path, idempotent=True)
        else:
            run.pve.run("POST", path, idempotent=True, forceStop=1)
    return f"{res.key} ({res.name}) {'started' if action == 'start' else 'stopped'}"
