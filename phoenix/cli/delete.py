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


def plan_delete(run: Any, word: str, with_children: bool) -> list[tuple[str, int, str, str]]:
    """The guests to destroy, children first, each layer's per-member copies just before it: (what, vmid, Proxmox
    type, the member it is on); refusals raise before anything is done."""
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
        copies = sorted((f for f in run.view.guests().values() if f.managed and f.copy_of == str(vmid)),
                        key=lambda f: f.vmid)  # a layer's copies on other members go with it (cluster/copies.py)
        for what, f in [*((f"copy of {key} on {c.node}", c) for c in copies), (key, run.view.get(vmid))]:
            if not f.managed:
                raise UnsafeOperation(f"guest {f.vmid} is not Phoenix's (no 'phoenix' tag and record): delete it "
                                      "yourself")
            node = f.node or run.endpoint.node  # where it is
            config = run.pve.get(f"nodes/{node}/{f.kind}/{f.vmid}/config")
            if config.get("protection") and not protected_allowed(f.vmid):
                raise UnsafeOperation(f"{what} (guest {f.vmid}) has protection set. Nothing was deleted. To allow it: "
                                      f"{ALLOW_PROTECTED}={f.vmid} phoenix delete {word}, or clear the flag first.")
            out.append((what, f.vmid, f.kind, node))
    return out


def delete(run: Any, word: str, *, with_children: bool, yes: bool, ask: Callable[[str], bool] | None) -> list[str]:
    """Delete as planned, once confirmed: ask(question) on a terminal, or yes given. Returns lines to say."""
    doomed = plan_delete(run, word, with_children)
    what = ", ".join(f"{key} (guest {vmid})" for key, vmid, _, _ in doomed)
    if not yes:
        if ask is None:
            raise PhoenixError(f"this would destroy {what}: confirm with --yes (not on a terminal, so nobody can be asked)")
        disks = "Its disks are" if len(doomed) == 1 else "Their disks are"
        if not ask(f"Destroy {what}? {disks} deleted. [y/N] "):
            return ["nothing was deleted"]
    said = []
    with run.holding():
        for key, vmid, kind, node in doomed:
            path = f"nodes/{node}/{kind}/{vmid}"
            facts = run.view.get(vmid)
            if facts is not None and facts.status == "running":
                run.pve.run("POST", f"{path}/status/stop", idempotent=True)
            config = run.pve.get(f"{path}/config")
            if config.get("protection"):
                run.pve.run("PUT", f"{path}/config", idempotent=True, protection=0)
            run.pve.run("DELETE", path, purge=1)
            said.append(f"deleted {key} (guest {vmid})")
    keys = [key for key, _, _, _ in doomed if not key.startswith("copy of ")]
    one = len(keys) == 1
    said.append(f"{', '.join(keys)} {'is' if one else 'are'} still in the config: the next `doit` builds "
                f"{'it' if one else 'them'} again; remove {'it' if one else 'them'} from the config to keep "
                f"{'it' if one else 'them'} gone")
    return said
