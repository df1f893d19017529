"""`phoenix adopt ID`: a guest's Portainer environment and stacks handed to Phoenix on purpose (portainer/adopt.py):
those an earlier Phoenix deployed (unsigned records), or a person, or Phoenix under a previous admin password. It holds
the host's lease while it writes, like every verb that writes."""

from __future__ import annotations

from typing import Any

from ..errors import PhoenixError
from .targets import resolve


def adopt(run: Any, word: str) -> list[str]:
    """What was adopted, one line each; refusals raise before anything is written."""
    from ..kinds.portainer.resources import env_key
    from ..portainer.adopt import adopt as adopt_on
    from ..portainer.listing import OK

    res = resolve(run.resources, word)
    guest = res.vmid
    env = run.resources.get(env_key(guest)) if guest is not None else None
    if guest is None or env is None:
        raise PhoenixError(f"{res.key} runs no stacks in the estate (its docker_stacks): it has nothing on Portainer "
                           "for Phoenix to adopt")
    stacks = sorted(r.settings["stack"] for r in run.resources.values()
                    if r.kind == "stack" and r.settings.get("guest") == guest)
    listing = run.view.portainer()
    if listing is None or listing.state != OK:
        why = "no listing" if listing is None else listing.state
        raise PhoenixError(f"Portainer cannot be read ({why}): build portainer:server first (doit portainer:server)")
    with run.holding():
        return adopt_on(run.portainer_side.client(), listing, guest=guest, url=env.settings["url"], stacks=stacks)
