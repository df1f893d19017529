"""`phoenix status [--json]`: every resource with its kind, parent, state on the host, the cluster member it is on,
whether it is up to date (and why not, as `doit plan` says) and its address; a layer's per-node copies on a cluster
(guests tagged phx-copy-N) follow the layer. The table ends with one line of counts per state."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from ..graph.model import stale_copy
from ..plan import Action

PREFIX = {"lxc": "ct", "vm": "vm", "qemu": "vm"}   # a resource's kind, or a guest's in the listing


def state(facts: Any) -> str:
    """A guest's status as Proxmox lists it ("running", "stopped"); "present" for what is not a guest (a stack, an
    environment, the Portainer token); "absent" for what is not there."""
    if facts is None:
        return "absent"
    return str(getattr(facts, "status", None) or "present")


def node_of(facts: Any) -> str | None:
    """The member a guest is on (the listing's node); None for what is not a guest or not there."""
    return str(getattr(facts, "node", "") or "") or None


def copies_by_layer(guests: Any) -> dict[str, list[Any]]:
    """The per-node copies in the listing (guests tagged phx-copy-N), by the task of the layer they copy."""
    copies: dict[str, list[Any]] = {}
    for facts in guests.values():
        if facts.copy_of:
            copies.setdefault(f"{PREFIX.get(facts.kind, 'ct')}{facts.copy_of}", []).append(facts)
    return copies


def copy_key(copy: Any) -> str:
    """The name a per-node copy goes by in the table and the graph: "ct200920"."""
    return f"{PREFIX.get(copy.kind, 'ct')}{copy.vmid}"


def current(copy: Any, facts: Any) -> bool:
    """Whether a copy holds its layer's build (the layer's facts: None when the layer is not there)."""
    return facts is not None and copy.identity == facts.identity and copy.build_id == facts.build_id


def rows(run: Any) -> list[dict[str, Any]]:
    guests = run.view.guests()
    decisions = run.planner.plan(run.facts_of, forced=run.forced.keys(), live_owners=run.live_owners())
    copies = copies_by_layer(guests)
    out = []
    for key, res in run.resources.items():
        facts = run.facts_of(res)
        d = decisions[key] if decisions[key].action == Action.OK else run.explain(decisions[key])
        out.append({"task": key, "kind": res.kind, "vmid": res.vmid, "name": res.name, "parent": res.parent,
                    "node": node_of(facts), "state": state(facts), "copy_of": None,
                    "up_to_date": d.action == Action.OK, "why": "" if d.action == Action.OK else d.text,
                    "ip": address(run.estate, res)})
        for copy in sorted(copies.get(key, ()), key=lambda f: f.vmid):
            out.append(copy_row(key, copy, facts))
    return out


def copy_row(layer: str, copy: Any, facts: Any) -> dict[str, Any]:
    """A per-node copy of a layer: up to date while it holds the layer's build."""
    same = current(copy, facts)
    return {"task": copy_key(copy), "kind": "vm" if copy.kind == "qemu" else copy.kind,
            "vmid": copy.vmid, "name": copy.name,
            "parent": None, "node": node_of(copy), "state": state(copy), "copy_of": layer, "up_to_date": same,
            "why": "" if same else stale_copy(layer), "ip": None}


def address(estate: Any, res: Any) -> str | None:
    """A guest's configured address with its prefix (a container's from its net0, a VM's from its cloud-init
    network_config), "dhcp" for DHCP; None for what is not a guest."""
    if res.kind == "vm" and res.vmid in estate.vms:
        net = estate.vms[res.vmid].network_config
        return "dhcp" if net is None else str(net.ip)
    ip = re.search(r"\bip=([^,]+)", str(res.settings.get("net0") or ""))
    return ip.group(1) if ip else None


def summary(found: list[dict[str, Any]]) -> str:
    """`phoenix status: 17 resources: 8 running, 4 stopped, 5 present; 17 up to date` (copies counted apart)."""
    own = [r for r in found if r["copy_of"] is None]
    states = Counter(r["state"] for r in own)
    order = ("running", "stopped", "present", "absent")
    parts = [f"{states[s]} {s}" for s in (*order, *sorted(set(states) - set(order))) if states.get(s)]
    stale = sum(1 for r in own if not r["up_to_date"])
    copies = len(found) - len(own)
    return (f"phoenix status: {len(own)} resources: {', '.join(parts) or 'none'}; "
            + (f"{stale} not up to date" if stale else "all up to date")
            + (f"; {copies} layer cop{'y' if copies == 1 else 'ies'} on other nodes" if copies else "") + "\n")


def table(found: list[dict[str, Any]]) -> str:
    head = ("task", "kind", "parent", "node", "state", "ip", "up to date")
    lines = [[r["task"], r["kind"], f"copy of {r['copy_of']}" if r["copy_of"] else r["parent"] or "-", r["node"] or "-",
              r["state"], r["ip"] or "-", "yes" if r["up_to_date"] else f"no: {r['why']}"] for r in found]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return "\n".join(fmt.format(*row) for row in [list(head), *lines]) + "\n" + summary(found)


def render(found: list[dict[str, Any]], as_json: bool) -> str:
    return json.dumps(found, indent=1) + "\n" if as_json else table(found)
