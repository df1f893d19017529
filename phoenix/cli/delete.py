"""`phoenix delete ID`: a Phoenix guest destroyed on purpose, with every safety of a rebuild.

It refuses while Phoenix guests are cloned from it (unless --with-children: they go first, deepest first), a
protected guest (unless PHOENIX_DESTROY_PROTECTED names it), a guest that is not Phoenix's, and asks before it
destroys anything (on a terminal; elsewhere --yes says so). It holds the host's lease while it writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import PhoenixError, UnsafeOperation
from ..flags import ALLOW_PROTECTED, protected_allowed
from ..resources import descendants
from .targets import resolve


def plan_delete(run: Any, word: str, with_children: bool) -> list[tuple[str, int, str]]:
    """The guests to destroy, children first: (key, vmid, Proxmox type); refusals raise before anything is done."""
    res = resolve(run.resources, word)
    if res.vmid is None:
        raise PhoenixError(f"{res.key} is not a guest: only guests are deleted")
    facts = run.view.get(res.vmid)
    if facts is None:
        raise PhoenixError(f"{res.key} ({res.name}) is not on the host: nothing to delete")
    children = [k for k in descendants(run.resources, res.key)
                if run.resources[k].vmid is not None and run.view.get(run.resources[k].vmid) is not None]
    if children and not with_children:
        raise UnsafeOperation(f"{res.key} has Phoenix guests cloned from it on the host: {', '.join(children)}. Nothing "
                              "was deleted. Delete them too with --with-children (they go first), or delete them first.")
    out = []
    for key in [*reversed(children), res.key]:
        vmid = run.resources[key].vmid
        f = run.view.get(vmid)
        if not f.managed:
            raise UnsafeOperation(f"guest {vmid} is not Phoenix's (no 'phoenix' tag and record): delete it yourself")
        config = run.pve.get(f"nodes/{run.endpoint.node}/{f.kind}/{vmid}/config")
        if config.get("protection") and not protected_allowed(vmid):
            raise UnsafeOperation(f"{key} (guest {vmid}) has protection set. Nothing was deleted. To allow it: "
                                  f"{ALLOW_PROTECTED}={vmid} phoenix delete {word}, or clear the flag first.")
        out.append((key, vmid, f.kind))
    return out


def delete(run: Any, word: str, *, with_children: bool, yes: bool, ask: Callable[[str], bool] | None) -> list[str]:
    """Delete as planned, once confirmed: ask(question) on a terminal, or yes given. Returns lines to say."""
    doomed = plan_delete(run, word, with_children)
    what = ", ".join(f"{key} (guest {vmid})" for key, vmid, _ in doomed)
    if not yes:
        if ask is None:
            raise PhoenixError(f"this would destroy {what}: confirm with --yes (not on a terminal, so nobody can be asked)")
        disks = "Its disks are" if len(doomed) == 1 else "Their disks are"
        if not ask(f"Destroy {what}? {disks} deleted. [y/N] "):
            return ["nothing was deleted"]
    said = []
    node = run.endpoint.node
    with run.holding():
        for key, vmid, kind in doomed:
            path = f"nodes/{node}/{kind}/{vmid}"
            facts = run.view.get(vmid)
            if facts is not None and facts.status == "running":
                run.pve.run("POST", f"{path}/status/stop", idempotent=True)
            config = run.pve.get(f"{path}/config")
            if config.get("protection"):
                run.pve.run("PUT", f"{path}/config", idempotent=True, protection=0)
            run.pve.run("DELETE", path, purge=1)
            said.append(f"deleted {key} (guest {vmid})")
    keys = [key for key, _, _ in doomed]
    one = len(keys) == 1
    said.append(f"{', '.join(keys)} {'is' if one else 'are'} still in the config: the next `doit` builds "
                f"{'it' if one else 'them'} again; remove {'it' if one else 'them'} from the config to keep "
                f"{'it' if one else 'them'} gone")
    return said
