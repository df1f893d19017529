"""Decide what each layer needs, from the desired layers and what the host says (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .facts.guests import GuestFacts
from .layers import Layer

MIB, GIB = 1024 ** 2, 1024 ** 3


class Action(StrEnum):
    BUILD = "build"            # not on the host
    REBUILD = "rebuild"        # on the host, built from other inputs (or unfinished, or forced)
    UPDATE = "update"          # same build, settings to change in place
    OK = "up-to-date"
    BLOCKED = "blocked"        # Phoenix will not touch it (foreign guest)

    @property
    def bakes(self) -> bool:
        return self in (Action.BUILD, Action.REBUILD)


GENERIC_REASONS = (("build inputs changed",), ("settings changed",))  # what decide() says without the record


@dataclass(frozen=True)
class Decision:
    ctid: int
    action: Action
    reasons: tuple[str, ...] = ()

    @property
    def needs_record(self) -> bool:
        """Only the guest's record (its description) can say which input or setting changed."""
        return self.reasons in GENERIC_REASONS

    @property
    def summary(self) -> str:
        return f"ct{self.ctid}: {self.action}" + (f" ({'; '.join(self.reasons)})" if self.reasons else "")


def _label(key: str) -> str:
    kind, _, name = key.partition(":")
    return {"feature": f"feature {name} changed", "app": f"app script {name} changed", "lib": "shared script library changed",
            "os_template": "OS template changed", "config": "build settings changed",
            "app_config": "app settings changed"}.get(kind, f"{key} changed")


def input_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    keys = sorted(set(old) | set(new), key=lambda k: (k != "os_template", k))
    out = []
    for k in keys:
        if k not in old:
            out.append(f"{k.replace(':', ' ')} added")
        elif k not in new:
            out.append(f"{k.replace(':', ' ')} removed")
        elif old[k] != new[k]:
            out.append(_label(k))
    return out


def settings_changes(layer: Layer, facts: GuestFacts, old: dict[str, Any] | None) -> list[str]:
    """Readable differences of the in-place settings: from the record if known, else from the listing."""
    out = []
    want = layer.settings
    if facts.maxmem and facts.maxmem != want["memory"] * MIB:
        out.append(f"memory {facts.maxmem // MIB} -> {want['memory']} MB")
    if facts.maxcpu and facts.maxcpu != want["cores"]:
        out.append(f"cores {facts.maxcpu} -> {want['cores']}")
    if old:
        for key in sorted(want):
            if key in ("memory", "cores") or old.get(key) == want[key]:
                continue
            out.append(f"{key} {_short(old.get(key))} -> {_short(want[key])}")
    if not out and facts.settings_hash != layer.settings_hash:
        out.append("settings changed")
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def decide(layer: Layer, facts: GuestFacts | None, *, parent_build: str | None = None,
           parent_action: Action | None = None, forced: bool = False,
           record: dict[str, Any] | None = None) -> Decision:
    """What the layer needs now.

    parent_build: the parent's build id on the host (None for a root layer).
    parent_action: what its parent needs in this run; a parent that bakes makes its children rebake.
    record: the record in the guest's description, when known, to explain a rebuild or an update.
    """
    c = layer.ctid
    if facts is None:
        return Decision(c, Action.BUILD, ("not on the host",))
    if not facts.managed:
        return Decision(c, Action.BLOCKED, (
            f"CT {c} exists but is not managed by Phoenix (it has no 'phoenix' tag); Phoenix will not "
            f"replace it: move it to another CTID or remove it yourself",))
    if facts.kind != "lxc":
        return Decision(c, Action.BLOCKED, (f"VMID {c} is a VM, not a container",))
    if parent_action is not None and parent_action.bakes:
        verb = "rebuilds" if parent_action == Action.REBUILD else "is built"
        return Decision(c, Action.REBUILD, (f"parent ct{layer.parent} {verb}",))
    if facts.building or not facts.identity:
        return Decision(c, Action.REBUILD, ("an earlier bake did not finish",))
    if facts.identity != layer.identity(parent_build):
        reasons: list[str] = []
        if record:
            if layer.parent is not None and record.get("parent_build") != parent_build:
                reasons.append(f"parent ct{layer.parent} was rebuilt")
            reasons += input_changes(record.get("inputs", {}), layer.inputs)
        return Decision(c, Action.REBUILD, tuple(reasons or ["build inputs changed"]))
    if forced:
        return Decision(c, Action.REBUILD, ("forced by doit forget",))
    if facts.maxdisk and layer.settings["rootfs_gb"] * GIB < facts.maxdisk:
        return Decision(c, Action.REBUILD, (
            f"storage_size_gb shrinks from {facts.maxdisk // GIB} to {layer.settings['rootfs_gb']} GB, "
            "which only a rebuild can do",))
    drift = (facts.maxmem and facts.maxmem != layer.settings["memory"] * MIB) or \
            (facts.maxcpu and facts.maxcpu != layer.settings["cores"])
    if facts.settings_hash != layer.settings_hash or drift:
        return Decision(c, Action.UPDATE, tuple(settings_changes(layer, facts, (record or {}).get("settings"))))
    return Decision(c, Action.OK)


def plan(layers: dict[int, Layer], guests: dict[int, GuestFacts], forced: set[int] = frozenset(),
         records: dict[int, dict[str, Any]] | None = None) -> dict[int, Decision]:
    """Decisions for every layer, parents first, staleness carried down the chain."""
    records = records or {}
    out: dict[int, Decision] = {}
    for ctid, layer in layers.items():
        parent = layer.parent
        p_facts = guests.get(parent) if parent is not None else None
        out[ctid] = decide(layer, guests.get(ctid), parent_build=p_facts.build_id if p_facts else None,
                           parent_action=out[parent].action if parent is not None else None,
                           forced=ctid in forced, record=records.get(ctid))
    return out
