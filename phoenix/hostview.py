"""What a run knows of the cluster: one bulk listing (every guest, node and storage), then kept current by the run's
own builds.

Shared by doit's threads (`doit -n 4` runs resources in threads): every change goes through here, under one
lock, and bumps `version`, so decisions made against an older view are made again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .errors import PhoenixError

if TYPE_CHECKING:
    from .portainer.listing import Listing
    from .steps import Effect

from .cluster.facts import ClusterFacts, parse_cluster
from .facts.guests import GuestFacts, parse_resources, split_tags


class HostView:
    """The cluster's guests, keyed by vmid (unique in a cluster), and its members (thread-safe)."""

    def __init__(self, lister: Callable[[], list[dict[str, Any]]],
                 notes: Callable[[str], dict[str, Any]] | None = None, portainer: Callable[[], Listing | None] | None = None):
        """lister: GET /cluster/resources (every guest, node and storage); notes: GET /nodes/{node}/config (read only
        when a host part of that node is decided); portainer: GET /api/stacks of the Portainer server (read only when a
        stack or environment is decided; None: not there yet). Each is called on first use."""
        self._lister, self._notes_reader = lister, notes
        self._portainer_reader = portainer
        self._portainer: Listing | None = None
        self._portainer_failed: PhoenixError | None = None
        self._notes: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._guests: dict[int, GuestFacts] | None = None
        self._cluster = ClusterFacts()
        self._failed: PhoenixError | None = None  # a listing that failed fails the same way for every task
        self.version = 0

    def _read(self) -> tuple[dict[int, GuestFacts], ClusterFacts]:
        items = self._lister()
        return parse_resources(items), parse_cluster(items)

    def guests(self) -> dict[int, GuestFacts]:
        """Every guest of the cluster (listed on first use). Read it, never change it: use apply()."""
        with self._lock:
            if self._guests is None:
                if self._failed is not None:
                    raise self._failed
                try:
                    self._guests, self._cluster = self._read()
                except PhoenixError as e:
                    self._failed = e
                    raise
            return self._guests

    def cluster(self) -> ClusterFacts:
        """The members as the same listing shows them: online or not, memory, storages."""
        self.guests()
        return self._cluster

    def host_record(self, node: str) -> dict[str, dict[str, Any]]:
        """The host parts Phoenix recorded in a node's notes, by key (one read per node, then kept current)."""
        with self._lock:
            if node not in self._notes:
                from .facts.node import split_notes

                config = self._notes_reader(node) if self._notes_reader is not None else {}
                self._notes[node] = split_notes(config.get("description"))[1]
            return self._notes[node]

    def portainer(self) -> Listing | None:
        """What Portainer has deployed (one listing, then kept current by the run's deployments), or None when
        there is no server to ask yet."""
        with self._lock:
            if self._portainer is None and self._portainer_reader is not None:
                if self._portainer_failed is not None:
                    raise self._portainer_failed
                try:
                    self._portainer = self._portainer_reader()
                except PhoenixError as e:
                    self._portainer_failed = e
                    raise
            return self._portainer

    def touched(self) -> None:
        """The run changed something the view's listings hold (a stack deployed): decisions are made again."""
        with self._lock:
            self.version += 1

    def portainer_changed(self) -> None:
        """Portainer changed in a way the listing cannot follow (a new token): list it again when next asked."""
        with self._lock:
            self._portainer, self._portainer_failed = None, None
            self.version += 1

    def get(self, vmid: int) -> GuestFacts | None:
        return self.guests().get(vmid)

    @property
    def listed(self) -> bool:
        return self._guests is not None

    def relist(self) -> None:
        """List the host again (another run may have changed it since)."""
        guests, cluster = self._read()
        with self._lock:
            self._guests, self._cluster = guests, cluster
            self._notes = {}
            self._portainer, self._portainer_failed = None, None
            self.version += 1

    def apply(self, effect: Effect) -> None:
        """A step of this run changed the host: so does the view."""
        from .steps import Forget, HostRecorded, SetFacts

        if isinstance(effect, HostRecorded):
            record = self.host_record(effect.node)
            with self._lock:
                record[effect.key] = {"identity": effect.identity, "inputs": dict(effect.inputs)}
                self.version += 1
            return
        guests = self.guests()
        with self._lock:
            if isinstance(effect, Forget):
                guests.pop(effect.vmid, None)
            elif isinstance(effect, SetFacts):
                old = None if effect.new else guests.get(effect.vmid)
                base = old or GuestFacts(effect.vmid)
                tags = base.tags if effect.keep_tags else split_tags(effect.tags)
                guests[effect.vmid] = replace(base, tags=tags, **dict(effect.changes))
            self.version += 1
