"""Guests the estate keeps running (pure): one stopped by hand is started again, in place, by the next run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..facts.guests import GuestFacts
from ..resources import Resource

if TYPE_CHECKING:  # steps (its dataclasses take 10 ms to make) are not imported by a no-op
    from ..steps import Call

REASON = "stopped → start"


def stopped_by_hand(res: Resource, facts: GuestFacts) -> bool:
    """The config wants it running (an app guest, or a layer its build leaves running) and it is stopped; a guest
    under HA is HA's to start or stop."""
    return res.runs and facts.status == "stopped" and not facts.template and facts.hastate is None


def start(path: str, vmid: int, tags: str = "") -> Call:
    """`path`: the guest's API path (nodes/<node>/lxc/<vmid>)."""
    from ..steps import Call, SetFacts

    return Call("start (it was stopped)", "POST", f"{path}/status/start", idempotent=True,
                then=SetFacts(vmid, tags, {"status": "running"}, keep_tags=True))
