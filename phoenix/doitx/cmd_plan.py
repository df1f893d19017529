"""`doit plan`: what a run would do to each layer and why, with staleness carried down the chain.

doit's own `list --status` does not propagate staleness from a parent to its children; this does.
It reads the host (one listing, plus the record of a stale guest when only that can say why) and changes nothing.
"""

from __future__ import annotations

from doit.cmd_base import DoitCmdBase

from ..layers import with_ancestors
from ..plan import Action, plan


class Plan(DoitCmdBase):
    doc_purpose = "show what `doit` would rebuild, update or leave, and why (changes nothing)"
    doc_usage = "[TASK ...]"
    doc_description = None
    cmd_options = ()

    def _execute(self, pos_args=None):
        from .tasks import current

        run = current()
        layers, guests = run.layers, run.guests()
        decisions = plan(layers, guests, run.forced())
        records = {c: run.record(c) for c, d in decisions.items() if d.needs_record}
        if records:
            decisions = plan(layers, guests, run.forced(), records)
        wanted = {int(t.removeprefix("ct")) for t in (pos_args or []) if t.removeprefix("ct").isdigit()}
        if wanted:
            keep = with_ancestors(layers, wanted)
            decisions = {c: d for c, d in decisions.items() if c in keep}
        width = max((len(f"ct{c}") for c in decisions), default=5)
        for ctid, d in decisions.items():
            reasons = "; ".join(d.reasons)
            if d.action == Action.REBUILD and reasons.startswith("parent "):
                text = f"follows ({reasons})"
            else:
                text = f"{d.action}" + (f": {reasons}" if reasons else "")
            self.outstream.write(f"ct{ctid:<{width - 2}}  {text}\n")
        todo = sum(1 for d in decisions.values() if d.action != Action.OK)
        self.outstream.write(f"phoenix plan: {todo} of {len(decisions)} layers to change; "
                             f"{run.counters.total} API requests (target: {run.target})\n")
        return 0
