"""`doit plan [--steps] [TASK ...]`: what a run would do to each resource and why; changes nothing.

The same decisions as the run's (one decision path), staleness carried down the chain. It reads the host:
one listing, plus the record of a stale resource when only that can say why. With --steps it also reads what
each build needs (configs, the OS template's storage, the node's GPUs), runs the checks a build makes before
it writes anything, and prints the exact calls each build would make. With --graph it draws the same decisions
(phoenix.cli.graph: `phoenix graph`) instead of listing them.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from doit.cmd_base import DoitCmdBase

from ..errors import PhoenixError
from ..plan import Action, Decision
from ..resources import with_ancestors
from ..steps import render
from . import current

STEPS_OPTION = {"name": "steps", "long": "steps", "type": bool, "default": False,
                "help": "also print the exact calls of each build (reads what they need; changes nothing)"}
GRAPH_OPTIONS = (
    {"name": "graph", "long": "graph", "type": bool, "default": False,
     "help": "draw the estate instead: every task, its state and why, and what it is cloned from, deployed to or needs"},
    {"name": "format", "long": "format", "type": str, "default": "mermaid",
     "choices": (("mermaid", ""), ("dot", ""), ("svg", "")), "help": "with --graph: mermaid, dot or svg (Graphviz)"},
    {"name": "changed", "long": "changed", "type": bool, "default": False,
     "help": "with --graph: only what a run would change, and what it hangs from"},
    {"name": "graph_from", "long": "from", "type": str, "default": "",
     "help": "with --graph: only this layer and what is cloned from it or deployed to it"},
)


def summary(decisions: dict[str, Decision]) -> str:
    """`phoenix plan: 2 of 17 resources to change (1 rebuild, 1 update, 15 up-to-date)`: counts per state."""
    counts = Counter("restore" if d.artifact is not None else str(d.action) for d in decisions.values())
    order = ("build", "restore", "rebuild", "update", "start", "up-to-date", "blocked")
    parts = [f"{counts[k]} {k}" for k in (*order, *sorted(set(counts) - set(order))) if counts.get(k)]
    todo = sum(1 for d in decisions.values() if d.action != Action.OK)
    return f"phoenix plan: {todo} of {len(decisions)} resources to change ({', '.join(parts) or 'none'})"


class Plan(DoitCmdBase):
    doc_purpose = "show what `doit` would build, update or leave, and why (changes nothing)"
    doc_usage = "[--steps] [TASK ...] | --graph [--format mermaid|dot|svg] [--changed] [--from TASK] [TASK ...]"
    doc_description = None
    cmd_options = (STEPS_OPTION, *GRAPH_OPTIONS)

    def _execute(self, steps: bool = False, graph: bool = False, format: str = "mermaid", changed: bool = False,
                 graph_from: str = "", pos_args: list[str] | None = None) -> int:
        run = current.current()
        start: str | None = None
        if graph or changed or graph_from or format != "mermaid":
            from ..cli import graph as G

            run.out = sys.stderr  # what the run says on the side; stdout is the picture
            try:
                start = G.check(run.resources, format, graph_from, graph=graph, steps=steps)
            except G.Refused as e:
                sys.stderr.write(f"phoenix graph: {e}\n")
                return e.code
        wanted = [t for t in (pos_args or []) if t in run.resources]
        unknown = [t for t in (pos_args or []) if t not in run.resources]
        if unknown:
            from ..cli.targets import did_you_mean

            self.outstream.write(f"phoenix plan: no such task: {', '.join(unknown)} (see `doit list`)"
                                 f"{did_you_mean(unknown[0], run.resources)}\n")
            return 3
        keys = with_ancestors(run.resources, wanted) if wanted else None
        try:
            decisions = {k: run.explain(d) for k, d in self.decisions(run, keys).items()}
        except PhoenixError as e:
            (sys.stderr if graph else self.outstream).write(f"phoenix plan: {e}\n")
            return 1
        if graph:
            return self.draw(run, decisions, format, changed, start)
        width = max((len(k) for k in decisions), default=5)
        failed = 0
        members = len(run.view.cluster().nodes) > 1
        for key, d in decisions.items():
            copied = f"; then copied to {', '.join(d.copies)} for its guests there" if d.copies and d.action.bakes else ""
            where = f"  [{d.placed}{copied}]" if d.placed and members else ""
            self.outstream.write(f"{key:<{width}}  {d.text}{where}\n")
            if d.action in (Action.OK, Action.BLOCKED):
                continue
            if steps:
                failed += self.print_steps(run, d)
            elif run.kinds[run.resources[key].kind].plan_checks:
                failed += self.print_checks(run, d)
        self.outstream.write(f"{summary(decisions)}; {run.counters.total} API requests (target: {run.target})\n")
        return 1 if failed else 0

    def draw(self, run: Any, decisions: dict[str, Decision], fmt: str, changed: bool, start: str | None) -> int:
        """The decisions as a picture (phoenix.cli.graph), with doit's own status of the local cloudinit tasks."""
        from ..cli import graph as G

        try:
            self.outstream.write(G.draw(run, decisions, G.renders(self.task_list, self.dep_manager, run.root),
                                        fmt=fmt, changed=changed, start=start))
        except PhoenixError as e:
            sys.stderr.write(f"phoenix graph: {e}\n")
            return 1
        return 0

    @staticmethod
    def decisions(run: Any, keys: set[str] | None) -> dict[str, Decision]:
        run.view.guests()
        return run.planner.plan(run.facts_of, forced=run.forced.keys(), keys=keys, live_owners=run.live_owners())

    def print_checks(self, run: Any, d: Decision) -> int:
        """The checks that would stop the build (kinds whose checks are cheap reads say them in every plan)."""
        res = run.resources[d.key]
        try:
            problems = run.kinds[res.kind].prepare(res, d, run.context.at(d.node)).problems
        except PhoenixError as e:
            problems = (str(e),)
        for problem in problems:
            self.outstream.write(f"    check failed: {problem}\n")
        return 1 if problems else 0

    def print_steps(self, run: Any, d: Decision) -> int:
        """The build's steps, or the checks that would stop it; 1 if a check fails."""
        from ..kinds import KINDS

        res = run.resources[d.key]
        kind = KINDS[res.kind]
        ctx = run.context.at(d.node)   # on the member the build runs on, as the run's own prepare
        try:
            prepared = kind.prepare(res, d, ctx)
        except PhoenixError as e:
            self.outstream.write(f"    check failed: {e}\n")
            return 1
        for problem in prepared.problems:
            self.outstream.write(f"    check failed: {problem}\n")
        if prepared.problems:
            return 1
        parent = run.facts_of(run.resources[res.parent]) if res.parent is not None else None
        parent_bakes = res.parent is not None and run.decide(res.parent).action.bakes
        parent_build = f"<new build of {res.parent}>" if parent_bakes else (parent.build_id if parent is not None else None)
        identity = "<new>" if parent_bakes else None
        for step in kind.steps(res, d, prepared, ctx, build_id="<new>", parent_build=parent_build, identity=identity):
            self.outstream.write(f"    {step.what}: {render(step)}\n")
        return 0
