"""Where each guest goes on the cluster (pure): from what it needs of a node, where it is now, and the listing.

The rules, in order:
1. A guest on the host stays on the node it is on (placement is stable; a guest moved by hand or by HA is found
   where it is). Only a `node` the config names that the guest's record did not know moves it (the kind decides how).
2. A guest not on the host goes to the node its config names.
3. A clone goes to its parent's node when the parent's storage is local (its disk is there), and a linked clone of a
   template always (Proxmox makes a linked clone on the template's node only).
4. Otherwise: the online member with the most free memory that has what the guest needs (its storages with their
   content types, its GPUs), preferring one where the guests that must sit with it are (a template whose children
   are pinned to a node, or already built there, is made there). Ties go to the node first by name.

Each answer says why, for `doit plan`. Memory given to guests placed earlier in the same plan counts as used, so a
cold build spreads over the members.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .facts import ClusterFacts

MIB, GIB = 1024 ** 2, 1024 ** 3


@dataclass(frozen=True)
class Needs:
    """What a guest needs of its node, from its config (a resource's `place`)."""

    node: str | None = None                       # the config's node
    gpus: frozenset[int] = frozenset()
    storages: tuple[tuple[str, str], ...] = ()    # (storage, content) it uses on its node
    disk: str | None = None                       # the storage its own disk is on
    mem_mb: int = 0
    linked: bool = False                          # a linked clone of its parent (made on the parent's member only)

    @classmethod
    def of(cls, place: Mapping[str, Any]) -> Needs:
        return cls(place.get("node"), frozenset(place.get("gpus") or ()),
                   tuple((str(s), str(c)) for s, c in place.get("storages") or ()), place.get("disk"),
                   int(place.get("mem_mb") or 0), bool(place.get("linked")))

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "gpus": sorted(self.gpus), "storages": [list(s) for s in self.storages],
                "disk": self.disk, "mem_mb": self.mem_mb, **({"linked": True} if self.linked else {})}


@dataclass(frozen=True)
class Guest:
    """A guest resource as placement sees it."""

    key: str
    parent: str | None
    needs: Needs
    here: str | None = None    # the node it is on now (None: not on the host)


@dataclass(frozen=True)
class Placed:
    """Where a guest is or goes, and why. node None: nowhere fits (why says what is missing)."""

    node: str | None
    why: str
    here: str | None = None


@dataclass
class _Free:
    mem: dict[str, int] = field(default_factory=dict)


def place(guests: Sequence[Guest], cluster: ClusterFacts, members: Sequence[str] | None,
          gpus_of: Callable[[str], frozenset[int]]) -> dict[str, Placed]:
    """Every guest's node, parents before children (guests come parents first)."""
    names = list(members) if members is not None else sorted(cluster.nodes)
    by_key = {g.key: g for g in guests}
    children: dict[str, list[str]] = {}
    for g in guests:
        if g.parent in by_key:
            children.setdefault(g.parent, []).append(g.key)

    def fits(g: Guest, node: str, soft: bool = True) -> str | None:
        """Why the node cannot take the guest (None: it can). soft=False: only what no run can change (membership,
        the node being online, its GPUs), not its storages (host:storage or a person may add content)."""
        facts = cluster.nodes.get(node)
        if facts is None:
            return f"{node} is not a member of the cluster"
        if not facts.online:
            return f"{node} is offline"
        missing = sorted(g.needs.gpus - gpus_of(node))
        if missing:
            return f"{node} has no GPU {', '.join(map(str, missing))}"
        for storage, content in g.needs.storages if soft else ():
            if not facts.has_storage(storage, content):
                return f"{node} has no storage {storage} with {content} content"
        return None

    def local(g: Guest) -> bool:
        return g.needs.disk is not None and not cluster.shared(g.needs.disk)

    candidates = {g.key: [n for n in names if fits(g, n) is None] for g in guests}
    # where each guest would rather be: the nodes of the guests that must sit with it (bottom-up)
    wants: dict[str, list[str]] = {}
    for g in reversed(guests):
        own = [g.here] if g.here is not None else [g.needs.node] if g.needs.node else candidates[g.key]
        for c in children.get(g.key, ()):
            if local(g) or by_key[c].needs.linked:
                narrower = [n for n in own if n in wants[c]]
                if narrower:
                    own = narrower
        wants[g.key] = own
    free = {n: f.free_mem for n, f in cluster.nodes.items()}
    for g in guests:  # the guests the config pins take their memory first, whatever their order
        if g.here is None and g.needs.node and fits(g, g.needs.node) is None:
            free[g.needs.node] = free.get(g.needs.node, 0) - g.needs.mem_mb * MIB
    out: dict[str, Placed] = {}
    for g in guests:
        if g.here is not None:
            if g.needs.node and g.needs.node != g.here:
                out[g.key] = Placed(g.needs.node, f"the config places it on {g.needs.node}", g.here)
            else:
                out[g.key] = Placed(g.here, f"on {g.here}, where it is", g.here)
            continue
        if g.needs.node:
            why = fits(g, g.needs.node)
            out[g.key] = Placed(g.needs.node, f"the config places it on {g.needs.node}" + (f" ({why})" if why else ""))
            continue
        parent = by_key.get(g.parent) if g.parent else None
        if parent is not None and (local(parent) or g.needs.linked):
            p_node = out[parent.key].node
            if p_node is not None and p_node in candidates[g.key]:
                because = f"storage {parent.needs.disk} is local" if local(parent) else "a linked clone of it"
                out[g.key] = Placed(p_node, f"on {p_node} with its parent {parent.key} ({because})")
                free[p_node] = free.get(p_node, 0) - g.needs.mem_mb * MIB
                continue
        pool = [n for n in wants[g.key] if n in candidates[g.key]] or candidates[g.key]
        if not pool:  # no member has its storages: the best one that could (its build's checks say what to add)
            hard = [n for n in names if fits(g, n, soft=False) is None]
            reasons = "; ".join(why for n in names if (why := fits(g, n)))
            if not hard:
                out[g.key] = Placed(None, f"no member can take it: {reasons or 'the cluster lists no node'}")
                continue
            best = sorted(hard, key=lambda n: (-free.get(n, 0), n))[0]
            out[g.key] = Placed(best, f"placed on {best}, though no member has what it needs yet ({reasons})")
            free[best] = free.get(best, 0) - g.needs.mem_mb * MIB
            continue
        best = sorted(pool, key=lambda n: (-free.get(n, 0), n))[0]
        if len(candidates[g.key]) == 1:
            because = "the only member that fits"
        elif len(pool) < len(candidates[g.key]):
            because = "where the guests built from it go" + (", the most free memory" if len(pool) > 1 else "")
        else:
            because = "the most free memory"
        if g.needs.gpus:
            because += f", with GPUs {', '.join(map(str, sorted(g.needs.gpus)))}"
        out[g.key] = Placed(best, f"placed on {best}: {because} ({max(free.get(best, 0), 0) / GIB:.1f} GiB free)")
        free[best] = free.get(best, 0) - g.needs.mem_mb * MIB
    return out
