"""The cluster's members as one unfiltered GET /cluster/resources lists them (pure): each node's state and memory,
and the storages each node has, with their content types and whether they are shared."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StorageFacts:
    """A storage as one node sees it."""

    id: str
    content: frozenset[str] = frozenset()
    shared: bool = False
    active: bool = True
    plugin: str = ""


@dataclass(frozen=True)
class NodeFacts:
    """A member of the cluster."""

    name: str
    online: bool = True
    maxmem: int = 0
    mem: int = 0
    storages: dict[str, StorageFacts] = field(default_factory=dict)

    @property
    def free_mem(self) -> int:
        return max(self.maxmem - self.mem, 0)

    def has_storage(self, storage: str, content: str | None = None) -> bool:
        """The storage is enabled and active here (and takes that content)."""
        found = self.storages.get(storage)
        return found is not None and found.active and (content is None or content in found.content)


@dataclass(frozen=True)
class ClusterFacts:
    """Every member the listing names, by name."""

    nodes: dict[str, NodeFacts] = field(default_factory=dict)

    def online(self) -> list[str]:
        return sorted(n for n, f in self.nodes.items() if f.online)

    def shared(self, storage: str) -> bool:
        """The storage is shared (the same volumes on every node that has it: Ceph, NFS, ...)."""
        return any(s.shared for n in self.nodes.values() if (s := n.storages.get(storage)) is not None)


def parse_cluster(items: list[dict[str, Any]]) -> ClusterFacts:
    """The members and their storages from GET /cluster/resources (no type filter)."""
    storages: dict[str, dict[str, StorageFacts]] = {}
    for item in items:
        if item.get("type") == "storage" and item.get("node") and item.get("storage"):
            content = frozenset(c for c in str(item.get("content") or "").split(",") if c)
            storages.setdefault(str(item["node"]), {})[str(item["storage"])] = StorageFacts(
                str(item["storage"]), content, bool(int(item.get("shared") or 0)),
                str(item.get("status", "available")) == "available", str(item.get("plugintype") or ""))
    nodes = {}
    for item in items:
        if item.get("type") == "node" and item.get("node"):
            name = str(item["node"])
            nodes[name] = NodeFacts(name, str(item.get("status", "online")) == "online", int(item.get("maxmem") or 0),
                                    int(item.get("mem") or 0), storages.get(name, {}))
    return ClusterFacts(nodes)
