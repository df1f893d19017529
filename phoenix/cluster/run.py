"""A run's answers about the cluster: where each guest is or goes (placement over the run's view, stable for the
run), which members a layer is copied to, and its copies' VMIDs. Reads the run's view and config; no requests but
/cluster/status when a copy's VMID needs a node id the config does not give."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..errors import PhoenixError

if TYPE_CHECKING:
    from ..facts.guests import GuestFacts
    from ..resources import Resource
    from .placement import Placed


class Members:
    """The cluster side of one run (phoenix.runtime.Run)."""

    def __init__(self, run: Any):
        self.run = run
        self._placement: tuple[int, dict[str, Placed]] | None = None
        self._first_placed: dict[str, Placed] = {}

    def copy_targets(self, res: Resource) -> dict[str, tuple[str, ...]]:
        """The members a layer must be copied to, each with its children there that clone the copy: where children go
        that Proxmox cannot clone across to (its disk or theirs on local storage, or a linked clone of a template)."""
        from .copies import Route, route
        from .placement import Needs

        kids = self.children.get(res.key)
        here = self.placed(res.key) if kids else None
        if here is None or here.node is None:
            return {}
        cluster = self.run.view.cluster()
        shared = cluster.shared(Needs.of(res.place).disk or "")
        out: dict[str, list[str]] = {}
        for child in kids or ():
            where = self.placed(child)
            if where is None or where.node is None:
                continue
            needs = Needs.of(self.run.resources[child].place)
            if route(here.node, where.node, shared, cluster.shared(needs.disk or ""), needs.linked) == Route.COPY:
                out.setdefault(where.node, []).append(child)
        return {node: tuple(keys) for node, keys in out.items()}

    @cached_property
    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, res in self.run.resources.items():
            if res.parent is not None and res.kind in ("lxc", "vm"):
                out.setdefault(res.parent, []).append(key)
        return out

    def copy_on(self, node: str, vmid: int) -> GuestFacts | None:
        """The per-node copy of a layer on a member, as the listing shows it (None: not there)."""
        return next((f for f in self.run.view.guests().values()
                     if f.copy_of == str(vmid) and f.node == node and f.managed), None)

    def copy_vmid(self, node: str, vmid: int) -> int:
        """The VMID of a layer's copy on a member: its node id * 100000 + the layer's VMID."""
        from .copies import copy_vmid

        member = self.run.hypervisor.proxmox.member(node)
        nodeid = member.nodeid if member is not None else None
        if nodeid is None:
            from .members import nodeids

            found = self.run.context.once("cluster nodeids", lambda: nodeids(self.run.pve.get("cluster/status")))
            nodeid = found.get(node)
        if nodeid is None:
            raise PhoenixError(f"the cluster's status gives no node id for {node}: set proxmox.nodes[].nodeid")
        try:
            return copy_vmid(nodeid, vmid)
        except ValueError as e:
            raise PhoenixError(str(e)) from None

    def online(self, node: str) -> bool:
        """Whether a member is online (one the listing does not name is not known to be offline)."""
        found = self.run.view.cluster().nodes.get(node)
        return found is None or found.online

    def placed(self, key: str) -> Placed | None:
        """Where a guest is or goes on the cluster (None: not a guest), from the run's view (computed once a view)."""
        with self.run.lock:
            version = self.run.view.version
            if self._placement is None or self._placement[0] != version:
                self._placement = (version, self._place())
            return self._placement[1].get(key)

    def _place(self) -> dict[str, Placed]:
        from .placement import Guest, Needs, Placed, place

        guests = []
        parts = {key: Placed(res.place["node"], f"sets up {res.place['node']}") for key, res in self.run.resources.items()
                 if res.kind == "host" and res.place.get("node")}
        for key, res in self.run.resources.items():
            if res.vmid is None or res.kind not in ("lxc", "vm"):
                continue
            facts = self.run.view.get(res.vmid)
            guests.append(Guest(key, res.parent, Needs.of(res.place), facts.node or None if facts is not None else None))
        gpus = self.run.model.gpus
        found = place(guests, self.run.view.cluster(), self.run.model.members, lambda node: frozenset(gpus.get(node) or ()))
        # a guest not built yet keeps the member it was first placed on for the whole run (what this run builds
        # meanwhile must not move it), and one that is built is where it is
        for g in guests:
            if g.here is None and g.key in self._first_placed:
                found[g.key] = self._first_placed[g.key]
            elif g.here is None:
                self._first_placed[g.key] = found[g.key]
        return {**parts, **found}

