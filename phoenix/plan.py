"""Decide what each resource needs, from the desired resources and what the host says (pure).

One decision path: doit's uptodate check, `doit info`, `doit list -s`, `doit plan` and the run's actions
all ask `Planner.decide`, which decides a resource after its ancestors, so staleness is carried down the
chain: a child whose parent rebuilds "follows", and says what started it.

The generic rules (missing, foreign, unfinished, identity, forced) are here; what only a kind can tell
(a disk that would shrink, settings that drifted) is its `compare`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .resources import Resource

if TYPE_CHECKING:  # for the type checker only: a run that only decides never builds these classes
    from typing import Protocol

    class Rules(Protocol):
        """What only a resource's kind can tell the planner."""

        def foreign(self, res: Resource, facts: Any) -> tuple[Why, str] | None:
            """Why what the host has there is not this resource's to replace (not Phoenix's, another kind), or None."""

        def compare(self, res: Resource, facts: Any, record: dict[str, Any] | None) -> tuple[Action, Why, tuple[str, ...]] | None:
            """A change the generic rules do not see (same identity): REBUILD or UPDATE and why, or None."""


class Action(StrEnum):
    BUILD = "build"            # not on the host
    REBUILD = "rebuild"        # on the host, built from other inputs (or unfinished, or forced)
    UPDATE = "update"          # same build, settings to change in place
    OK = "up-to-date"
    BLOCKED = "blocked"        # Phoenix will not touch it

    @property
    def bakes(self) -> bool:
        return self in (Action.BUILD, Action.REBUILD)


class Why(StrEnum):
    """The cause of a decision, as data: what code branches on (the reasons are text, for people)."""

    UP_TO_DATE = "up to date"
    NOT_ON_HOST = "not on the host"
    FOREIGN = "not Phoenix's"
    WRONG_KIND = "another kind of guest"
    PARENT_BAKES = "parent is built or rebuilt"
    PARENT_BLOCKED = "parent is blocked"
    BUSY = "being built by another run"
    UNFINISHED = "an earlier build did not finish"
    INPUTS_CHANGED = "build inputs changed"
    FORCED = "forced"
    CANNOT_UPDATE = "a change only a rebuild can make"
    SETTINGS_CHANGED = "settings changed"
    NODE_OFFLINE = "its node is offline"
    NO_NODE = "no member of the cluster can take it"
    COPIES = "a copy on another member is missing or old"
    STOPPED = "stopped by hand"
    UNREACHABLE = "a service it is deployed through cannot be read"


# What a decision says when only the resource's record (read on demand) can say which input or setting changed.
GENERIC = {Why.INPUTS_CHANGED: "build inputs changed", Why.SETTINGS_CHANGED: "settings changed"}


@dataclass(frozen=True)
class Decision:
    key: str
    action: Action
    reasons: tuple[str, ...] = ()
    why: Why = Why.UP_TO_DATE
    origin: Decision | None = None  # for a follower: the ancestor's decision that started the chain
    parent: str | None = None
    artifact: Any = None            # a bake restored instead from this archive (its manifest: .archive, .build)
    node: str | None = None         # the cluster member it is built or changed on (None: not a guest, or nowhere)
    placed: str = ""                # why there (cluster.placement), for `doit plan`
    copies: tuple[str, ...] = ()    # the members its build (re)makes its copy on, for its children there

    @property
    def needs_record(self) -> bool:
        """Only the resource's record can say which input or setting changed (here or where the chain started)."""
        own = self.why in GENERIC and self.reasons == (GENERIC[self.why],)
        return own or (self.origin is not None and self.origin.needs_record)

    @property
    def text(self) -> str:
        """What the resource needs and why: what `doit plan` prints after the key."""
        if self.artifact is not None:
            return f"restore from artifact {self.artifact.archive}" + (f" ({'; '.join(self.reasons)})" if self.reasons else "")
        if self.why == Why.PARENT_BAKES:
            out = f"follows ({'; '.join(self.reasons)})"
            if self.origin is not None and self.origin.reasons:
                where = "" if self.origin.key == self.parent else f"{self.origin.key} "
                out += f": {where}{'; '.join(self.origin.reasons)}"
            return out
        return f"{self.action}" + (f": {'; '.join(self.reasons)}" if self.reasons else "")

    @property
    def summary(self) -> str:
        """One line with the key: what `doit info` and a failed uptodate check show."""
        if self.artifact is not None:
            return f"{self.key}: {self.text}"
        if self.why == Why.PARENT_BAKES:
            return f"{self.key}: {self.text}"
        return f"{self.key}: {self.action}" + (f" ({'; '.join(self.reasons)})" if self.reasons else "")


def input_label(key: str) -> str:
    kind, _, name = key.partition(":")
    return {"feature": f"feature {name} changed", "app": f"app script {name} changed", "lib": "shared script library changed",
            "os_template": "OS template changed", "config": "build settings changed",
            "app_config": "app settings changed", "script": f"script {name} changed",
            "driver": "NVIDIA driver version changed", "compose": "compose file changed",
            "var": f"variable {name} changed", "file": f"file {name} changed",
            "name": "stack name changed"}.get(kind, f"{key} changed")


def input_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    keys = sorted(set(old) | set(new), key=lambda k: (k != "os_template", k))
    out = []
    for k in keys:
        if k not in old:
            out.append(f"{k.replace(':', ' ')} added")
        elif k not in new:
            out.append(f"{k.replace(':', ' ')} removed")
        elif old[k] != new[k]:
            out.append(input_label(k))
    return out


class Planner:
    """Decisions for resources of every kind, each after its ancestors."""

    def __init__(self, resources: Mapping[str, Resource], rules: Mapping[str, Rules],
                 artifacts: Callable[[str], Any] | None = None, where: Callable[[str], Any] | None = None,
                 online: Callable[[str], bool] | None = None,
                 copies: Callable[[Resource], Mapping[str, tuple[str, ...]]] | None = None,
                 copy_facts: Callable[[str, int], Any] | None = None):
        """artifacts: the archive (manifest) of an identity in the artifact store, or None: a bake is a restore.
        where: a guest's placement (cluster.placement.Placed: node, why, here), None for what has no node;
        online: whether a member is online (a guest on an offline member is left alone); copies: the members a layer
        must be copied to, each with its children there that clone the copy; copy_facts: the copy of a layer (VMID)
        on a member, as the host lists it. A bake remakes every copy; an up-to-date layer is updated when a child
        that is built in this run needs a copy that is missing or of an older build."""
        self.resources, self.rules, self.artifacts = resources, rules, artifacts
        self.where, self.online, self.copies, self.copy_facts = where, online, copies, copy_facts

    def with_copies(self, res: Resource, facts: Any, decision: Decision, facts_of: Callable[[Resource], Any],
                    forced: Collection[str]) -> Decision:
        """The members the decision (re)makes the layer's copy on: all its copies for a bake; for a layer that stays,
        those a child built in this run needs that are missing or old (then it is an update)."""
        targets = self.copies(res) if self.copies is not None else {}
        if not targets or decision.action == Action.BLOCKED or res.vmid is None:
            return decision
        if decision.action.bakes:
            return replace(decision, copies=tuple(sorted(targets)))
        build = getattr(facts, "build_id", None)
        nodes, reasons = [], []
        for node, kids in sorted(targets.items()):
            if not any(self.bakes_alone(self.resources[k], facts_of, build, forced) for k in kids if k in self.resources):
                continue  # a copy only a later rebuild would need is made then
            found = self.copy_facts(node, res.vmid) if self.copy_facts is not None else None
            if found is None:
                reasons.append(f"no copy on {node} yet (its children there clone it)")
            elif found.build_id != build:
                what = "VM" if getattr(found, "kind", "lxc") == "qemu" else "CT"
                reasons.append(f"its copy on {node} ({what} {found.vmid}) is of an older build")
            else:
                continue
            nodes.append(node)
        if not nodes:
            return decision
        if decision.action == Action.OK:
            return replace(decision, action=Action.UPDATE, why=Why.COPIES, reasons=tuple(reasons), copies=tuple(nodes))
        return replace(decision, reasons=(*decision.reasons, *reasons), copies=tuple(nodes))

    def bakes_alone(self, child: Resource, facts_of: Callable[[Resource], Any], parent_build: str | None,
                    forced: Collection[str]) -> bool:
        """Whether a child is built in this run for reasons of its own (its parent staying as it is)."""
        facts = facts_of(child)
        if facts is None:
            return True
        return self.decide_one(child, facts, parent=None, parent_build=parent_build, forced=child.key in forced,
                               record=None).action.bakes

    def located(self, res: Resource, facts: Any, decision: Decision) -> Decision:
        """The decision with its node: a guest is changed where it is, built (or rebuilt) where it is placed; one on
        an offline member, or that no member can take, is blocked."""
        placed = self.where(res.key) if self.where is not None else None
        if placed is None:
            return decision
        here = getattr(facts, "node", None) or None
        node = placed.node if decision.action.bakes else (here or placed.node)
        if decision.action == Action.BLOCKED:
            return replace(decision, node=here or placed.node, placed=placed.why)
        if here is not None and self.online is not None and not self.online(here):
            return Decision(res.key, Action.BLOCKED, (f"its node {here} is offline: left alone",), Why.NODE_OFFLINE,
                            None, res.parent, node=here, placed=placed.why)
        if node is None:
            return Decision(res.key, Action.BLOCKED, (placed.why,), Why.NO_NODE, None, res.parent, placed=placed.why)
        if decision.action != Action.OK and self.online is not None and not self.online(node):
            return Decision(res.key, Action.BLOCKED, (f"it goes to {node}, which is offline",), Why.NODE_OFFLINE,
                            None, res.parent, node=node, placed=placed.why)
        return replace(decision, node=node, placed=placed.why)

    def restorable(self, res: Resource, decision: Decision, parent: Decision | None, parent_build: str | None) -> Decision:
        """A bake as a restore when the store has an archive of the identity the resource will have: its parent's build
        is the one on the host, or the one of the archive the parent is restored from (a parent baked anew has a new
        build id, which no archive has). A forced rebuild is always baked."""
        if self.artifacts is None or not decision.action.bakes or decision.why == Why.FORCED:
            return decision
        if parent is not None and parent.action.bakes:
            if parent.artifact is None:
                return decision
            parent_build = parent.artifact.build
        found = self.artifacts(res.identity(parent_build))
        if found is None or found.kind != res.kind:  # an archive restores only a resource of its own kind
            return decision
        return replace(decision, artifact=found)

    def decide_one(self, res: Resource, facts: Any, *, parent: Decision | None, parent_build: str | None,
                   forced: bool, record: dict[str, Any] | None, live_owners: Mapping[str, str] | None = None) -> Decision:
        """What one resource needs, given its parent's decision in this run and build id on the host.

        record: the record kept with the resource on the host, when known, to explain a rebuild or an update.
        live_owners: other runs alive now (id -> who they are); a guest they are building is theirs."""
        k = res.key

        def d(action: Action, why: Why, *reasons: str, origin: Decision | None = None) -> Decision:
            return Decision(k, action, reasons, why, origin, res.parent)

        if facts is None:
            absent = getattr(self.rules.get(res.kind), "absent", None)  # a kind may say it in its own words
            return d(Action.BUILD, Why.NOT_ON_HOST, absent(res) if absent is not None else "not on the host")
        rules = self.rules[res.kind]
        foreign = rules.foreign(res, facts)
        if foreign is not None:
            return d(Action.BLOCKED, *foreign)
        if parent is not None and parent.action.bakes:
            verb = "rebuilds" if parent.action == Action.REBUILD else "is built"
            origin = parent.origin if parent.why == Why.PARENT_BAKES else parent
            return d(Action.REBUILD, Why.PARENT_BAKES, f"parent {parent.key} {verb}", origin=origin)
        if parent is not None and parent.action == Action.BLOCKED and parent.why != Why.NODE_OFFLINE:
            return d(Action.BLOCKED, Why.PARENT_BLOCKED, f"parent {parent.key} is blocked")
        if facts.building and facts.owner and live_owners and facts.owner in live_owners:
            return d(Action.BLOCKED, Why.BUSY, f"being built right now by {live_owners[facts.owner]}")
        if facts.building or not facts.identity:
            return d(Action.REBUILD, Why.UNFINISHED, "an earlier bake did not finish")
        if res.parent is not None and facts.build_id is not None and facts.build_id == parent_build:
            # a clone that ended after its run died: it carries the tags its parent had (build ids are never reused)
            return d(Action.REBUILD, Why.UNFINISHED, f"an earlier bake did not finish (it carries {res.parent}'s record)")
        if facts.identity != res.identity(parent_build):
            reasons: list[str] = []
            if record:
                if res.parent is not None and record.get("parent_build") != parent_build:
                    reasons.append(f"parent {res.parent} was rebuilt")
                reasons += input_changes(record.get("inputs", {}), res.inputs)
            return d(Action.REBUILD, Why.INPUTS_CHANGED, *(reasons or [GENERIC[Why.INPUTS_CHANGED]]))
        if forced:
            return d(Action.REBUILD, Why.FORCED, "forced by doit forget")
        found = rules.compare(res, facts, record)
        if found is not None:
            action, why, texts = found
            return d(action, why, *texts)
        return d(Action.OK, Why.UP_TO_DATE)

    def decide(self, key: str, facts_of: Callable[[Resource], Any], *, forced: Collection[str] = (),
               records: Mapping[str, dict[str, Any]] | None = None, live_owners: Mapping[str, str] | None = None,
               memo: dict[str, Decision] | None = None) -> Decision:
        """The resource's decision, its ancestors decided first (iteratively: chains may be long)."""
        memo = {} if memo is None else memo
        records = records or {}
        todo: list[str] = []  # the key and those of its ancestors not decided yet, nearest first
        k: str | None = key
        seen: set[str] = set()
        while k is not None and k in self.resources and k not in memo and k not in seen:
            todo.append(k)
            seen.add(k)
            k = self.resources[k].parent
        for k in reversed(todo):
            res = self.resources[k]
            parent = memo.get(res.parent) if res.parent is not None else None
            p_facts = facts_of(self.resources[res.parent]) if res.parent is not None and res.parent in self.resources else None
            p_build = p_facts.build_id if p_facts else None
            facts = facts_of(res)
            decision = self.decide_one(res, facts, parent=parent, parent_build=p_build, forced=k in forced,
                                       record=records.get(k), live_owners=live_owners)
            if parent is not None and parent.why == Why.NODE_OFFLINE and decision.action.bakes:
                # an up-to-date child of a layer on an offline member is fine; one that needs it cannot be built
                decision = Decision(k, Action.BLOCKED, (f"parent {parent.key} is on {parent.node}, which is offline",),
                                    Why.PARENT_BLOCKED, None, res.parent)
            decision = self.located(res, facts, self.restorable(res, decision, parent, p_build))
            memo[k] = self.with_copies(res, facts, decision, facts_of, forced)
        return memo[key]

    def plan(self, facts_of: Callable[[Resource], Any], *, forced: Collection[str] = (),
             records: Mapping[str, dict[str, Any]] | None = None, live_owners: Mapping[str, str] | None = None,
             keys: Collection[str] | None = None) -> dict[str, Decision]:
        """Decisions for every resource (or these keys), in the order of the resources (parents first)."""
        memo: dict[str, Decision] = {}
        for k in self.resources if keys is None else keys:
            self.decide(k, facts_of, forced=forced, records=records, live_owners=live_owners, memo=memo)
        return {k: memo[k] for k in self.resources if k in memo and (keys is None or k in keys)}
