"""`phoenix status [--json]`: every resource with its kind, parent, state on the host, whether it is up to date
(and why not, as `doit plan` says) and its address."""

from __future__ import annotations

import json
import re
from typing import Any

from ..plan import Action


def state(facts: Any) -> str:
    """A guest's status as Proxmox lists it ("running", "stopped"); "present" for what is not a guest (a stack, an
    environment, the Portainer token); "absent" for what is not there."""
    if facts is None:
        return "absent"
    return str(getattr(facts, "status", None) or "present")


def rows(run: Any) -> list[dict[str, Any]]:
    run.view.guests()
    decisions = run.planner.plan(run.facts_of, forced=run.forced.keys(), live_owners=run.live_owners())
    out = []
    for key, res in run.resources.items():
        facts = run.facts_of(res)
        d = decisions[key] if decisions[key].action == Action.OK else run.explain(decisions[key])
        out.append({"task": key, "kind": res.kind, "vmid": res.vmid, "name": res.name, "parent": res.parent,
                    "state": state(facts), "up_to_date": d.action == Action.OK,
                    "why": "" if d.action == Action.OK else d.text, "ip": address(run.estate, res)})
    return out


def address(estate: Any, res: Any) -> str | None:
    """A guest's configured address with its prefix (a container's from its net0, a VM's from its cloud-init
    network_config), "dhcp" for DHCP; None for what is not a guest."""
    if res.kind == "vm" and res.vmid in estate.vms:
        net = estate.vms[res.vmid].network_config
        return "dhcp" if net is None else str(net.ip)
    ip = re.search(r"\bip=([^,]+)", str(res.settings.get("net0") or ""))
    return ip.group(1) if ip else None


def table(found: list[dict[str, Any]]) -> str:
    head = ("task", "kind", "parent", "state", "ip", "up to date")
    lines = [[r["task"], r["kind"], r["parent"] or "-", r["state"], r["ip"] or "-",
              "yes" if r["up_to_date"] else f"no: {r['why']}"] for r in found]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return "\n".join(fmt.format(*row) for row in [list(head), *lines]) + "\n"


def render(found: list[dict[str, Any]], as_json: bool) -> str:
    return json.dumps(found, indent=1) + "\n" if as_json else table(found)
