"""The estate as a graph (pure): a node per doit task, an edge per "cloned from", "deployed to" and "needs".

Built from the resources and the planner's decisions (the same ones `doit plan` prints), the failures of the last run
and doit's own status of the local `cloudinit:<vmid>` tasks; the renderers (mermaid.py, dot.py) only draw it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ..plan import Action, Decision
from ..resources import Resource

CLOUDINIT = "cloudinit"  # the kind of a `cloudinit:<vmid>` node: a VM's cloud-init files, rendered on this machine
FAILED = "failed last run"


class State(StrEnum):
    """What a run would do to a node, as the planner decided (a node's colour)."""

    UP_TO_DATE = "up to date"
    UPDATE = "update in place"
    REBUILD = "rebuild"
    BUILD = "build"
    RESTORE = "restore from artifact"
    BLOCKED = "blocked"


class Relation(StrEnum):
    """What an edge says, read from its source to its target: "ct901 cloned from ct900"."""

    CLONED_FROM = "cloned from"   # a guest's parent: the layer it is cloned from
    DEPLOYED_TO = "deployed to"   # the parent of what is not a guest: a stack's environment, an environment's guest
    NEEDS = "needs"               # built after it: a resource's deps, a VM's cloud-init files
    COPY_OF = "copy of"           # a layer's copy on another cluster member, and the layer


# What each state and relation means, in the words of the README's legend.
LEGEND: dict[str, str] = {
    State.UP_TO_DATE: "on the host as configured: the run leaves it alone",
    State.UPDATE: "its settings are changed in place; it is not rebuilt",
    State.REBUILD: "destroyed and built again (its inputs changed, or its parent rebuilds: \"follows\")",
    State.BUILD: "not on the host (for cloud-init files: not rendered yet, or their sources changed)",
    State.RESTORE: "built from its archive in the artifact store",
    State.BLOCKED: "Phoenix will not touch it (not Phoenix's, being built by another run, Portainer cannot be read, "
                   "or its parent is blocked)",
    FAILED: "its task failed in the last run (.cache/last-run.json)",
    Relation.CLONED_FROM: "a guest and the layer it is cloned from",
    Relation.DEPLOYED_TO: "a stack and its environment, an environment or the Portainer server and its guest",
    Relation.NEEDS: "built after it: host parts, the Portainer server, a VM's cloud-init files",
    Relation.COPY_OF: "a layer's copy on another cluster member (its children there are cloned from it) and the layer",
}


def state_of(decision: Decision) -> State:
    if decision.artifact is not None:
        return State.RESTORE
    return {Action.OK: State.UP_TO_DATE, Action.UPDATE: State.UPDATE, Action.REBUILD: State.REBUILD,
            Action.BUILD: State.BUILD, Action.BLOCKED: State.BLOCKED}[decision.action]


@dataclass(frozen=True)
class Node:
    """One doit task. `node` is the cluster member a guest is on, when known (shown as "on <node>")."""

    key: str                # the doit task: "ct920", "stack:qdrant_service@910", "cloudinit:9001"
    kind: str               # lxc, vm, host, portainer, stack, cloudinit
    role: str               # template, app, host, files
    title: str              # "ct920 BaseTemplateVLLM"
    state: State
    reason: str             # what `doit plan` says after the key: "rebuild: feature vllm changed"; "up to date"
    failed: bool = False    # failed in the last run
    local: bool = False     # made on this machine, not on the host (a run that only renders it changes no host)
    node: str | None = None

    @property
    def lines(self) -> tuple[str, ...]:
        """The label, line by line: every renderer shows these."""
        return (self.title, self.reason, *((FAILED,) if self.failed else ()), *((f"on {self.node}",) if self.node else ()))


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    relation: Relation


@dataclass(frozen=True)
class Graph:
    nodes: dict[str, Node]                      # parents before children, a VM's cloud-init files after it
    edges: tuple[Edge, ...] = field(default=())

    def only(self, keys: Collection[str]) -> Graph:
        """These nodes (in the graph's order) and the edges between them."""
        return Graph({k: n for k, n in self.nodes.items() if k in keys},
                     tuple(e for e in self.edges if e.source in keys and e.target in keys))

    def ancestors(self, keys: Iterable[str]) -> set[str]:
        """These nodes and every node they hang from (cloned from, deployed to, needs), directly or not."""
        up: dict[str, list[str]] = {}
        for e in self.edges:
            up.setdefault(e.source, []).append(e.target)
        return _closure(keys, up)

    def subtree(self, key: str) -> Graph:
        """The node and everything cloned from it or deployed to it, directly or not."""
        down: dict[str, list[str]] = {}
        for e in self.edges:
            if e.relation != Relation.NEEDS:
                down.setdefault(e.target, []).append(e.source)
        return self.only(_closure([key], down))

    def changed(self) -> Graph:
        """What a run would change on the host (every node not up to date but local renders) and what it hangs from."""
        return self.only(self.ancestors(k for k, n in self.nodes.items() if n.state != State.UP_TO_DATE and not n.local))


def _closure(start: Iterable[str], step: Mapping[str, list[str]]) -> set[str]:
    out: set[str] = set()
    todo = list(start)
    while todo:
        k = todo.pop()
        if k not in out:
            out.add(k)
            todo += step.get(k, ())
    return out


@dataclass(frozen=True)
class Copy:
    """A layer's per-member copy on a cluster, as the listing shows it."""

    key: str                # "ct200920"
    node: str | None        # the member it is on
    current: bool           # it holds the layer's build (identity and build id)


def stale_copy(layer: str) -> str:
    """What a copy that does not hold its layer's build is said to be (here and by `phoenix status`)."""
    return f"a copy of another build of {layer} (made again when a clone needs it)"


def copy_node(layer: str, kind: str, copy: Copy, d: Decision) -> Node:
    """A copy drawn beside its layer: made again when the layer's build remakes it on that member; otherwise left."""
    if d.action.bakes and copy.node in d.copies:
        state, reason = State.REBUILD, f"rebuild: made again from {layer}'s new build"
    elif copy.current and not d.action.bakes:
        state, reason = State.UP_TO_DATE, str(State.UP_TO_DATE)
    else:
        state, reason = State.UP_TO_DATE, stale_copy(layer)
    return Node(copy.key, kind, "template", f"{copy.key} copy of {layer}", state, reason, node=copy.node)


def cloudinit_key(vmid: int) -> str:
    return f"cloudinit:{vmid}"


def title(res: Resource) -> str:
    return res.key if res.name.lower() in res.key.lower() else f"{res.key} {res.name}"


def build(resources: Mapping[str, Resource], decisions: Mapping[str, Decision], *, failed: Collection[str] = (),
          renders: Mapping[str, str | None] | None = None, members: bool = False,
          copies: Mapping[str, Collection[Copy]] | None = None) -> Graph:
    """The graph of the resources that have a decision.

    failed: the tasks that failed in the last run. renders: the `cloudinit:<vmid>` tasks doit has, each with why it
    renders (None: up to date). members: the host is a cluster of several members: each guest says which it is on
    (the decision's node). copies: each layer's copies on other members (drawn after it, "copy of" the layer)."""
    renders = renders or {}
    copies = copies or {}
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    for key, res in resources.items():
        d = decisions.get(key)
        if d is None:
            continue
        state = state_of(d)
        reason = str(State.UP_TO_DATE) if state == State.UP_TO_DATE else d.text
        nodes[key] = Node(key, res.kind, res.role, title(res), state, reason, key in failed,
                          node=d.node if members and res.vmid is not None else None)
        if res.parent is not None:
            edges.append(Edge(key, res.parent, Relation.CLONED_FROM if res.vmid is not None else Relation.DEPLOYED_TO))
        edges += [Edge(key, dep, Relation.NEEDS) for dep in res.deps]
        for copy in sorted(copies.get(key, ()), key=lambda c: c.key):
            nodes[copy.key] = copy_node(key, res.kind, copy, d)
            edges.append(Edge(copy.key, key, Relation.COPY_OF))
        if res.kind == "vm" and res.vmid is not None and cloudinit_key(res.vmid) in renders:
            ck = cloudinit_key(res.vmid)
            why = renders[ck]
            nodes[ck] = Node(ck, CLOUDINIT, "files", ck,
                             State.UP_TO_DATE if why is None else State.BUILD,
                             str(State.UP_TO_DATE) if why is None else f"build: {why}", ck in failed, local=True)
            edges.append(Edge(key, ck, Relation.NEEDS))
    return Graph(nodes, tuple(e for e in edges if e.source in nodes and e.target in nodes))
