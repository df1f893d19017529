"""Resources: what Phoenix builds, of any kind, as build artifacts with an identity (pure).

A resource's *identity* hashes its build inputs: its parent's build id (or, for a root, what it is made
from), the config that needs a rebuild, and the content of every script it runs. Its *build id* is new at
each build, so a rebuilt parent (forced or not) changes its children's identity and they follow. Settings
that can change in place are hashed apart (`settings`) and never touch children.

Every resource is a doit task, named by its `key` ("ct950"; later "vm9001", "stack:qdrant@1002", …).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FORMAT = 1  # bump when the way resources are built changes: every resource rebuilds


def digest(value: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:n]


@dataclass(frozen=True)
class Resource:
    """One build artifact: a guest layer, and later a VM, a snippet, a stack, a part of the host."""

    key: str                    # the doit task: "ct950"
    kind: str                   # "lxc"
    name: str
    parent: str | None          # the key of the resource it is built from (cloned from, deployed to, ...)
    role: str                   # "template" (others are built from it) or "app"
    inputs: dict[str, str]      # input name -> digest, for explanations ("feature:vllm": "3f2a...")
    settings: dict[str, Any]    # in-place settings, resolved
    doc: str = ""               # one line for `doit list`
    vmid: int | None = None     # the guest id on Proxmox, for guests
    deps: tuple[str, ...] = ()  # other resources needed first (not the parent)
    place: dict[str, Any] = field(default_factory=dict)  # what a guest needs of its node (cluster.placement.Needs)
    runs: bool = False          # a guest the estate keeps running (a stopped one is started again)
    settings_hash: str = field(init=False, compare=False)
    _identity_head: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings_hash", digest(self.settings, 10))
        # identity() hashes {"format", "inputs", "parent_build"} as digest() would; all but parent_build is fixed.
        object.__setattr__(self, "_identity_head",
                           f'{{"format": {FORMAT}, "inputs": {json.dumps(self.inputs, sort_keys=True)}, ')

    def identity(self, parent_build: str | None) -> str:
        """The resource's identity given its parent's current build id."""
        return hashlib.sha256(f'{self._identity_head}"parent_build": {json.dumps(parent_build)}}}'.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """As the model cache keeps it, with its digests (so loading it computes none)."""
        return {"key": self.key, "kind": self.kind, "name": self.name, "parent": self.parent, "role": self.role,
                "inputs": self.inputs, "settings": self.settings, "doc": self.doc, "vmid": self.vmid,
                "deps": list(self.deps), "place": self.place, "runs": self.runs, "settings_hash": self.settings_hash,
                "identity_head": self._identity_head}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Resource:
        """From to_json's form: the digests are taken as stored (the cache's key covers the code that made them)."""
        res = object.__new__(cls)
        for name, value in (("key", data["key"]), ("kind", data["kind"]), ("name", data["name"]), ("parent", data["parent"]),
                            ("role", data["role"]), ("inputs", data["inputs"]), ("settings", data["settings"]),
                            ("doc", data["doc"]), ("vmid", data["vmid"]), ("deps", tuple(data["deps"])),
                            ("place", data.get("place") or {}), ("runs", bool(data.get("runs"))),
                            ("settings_hash", data["settings_hash"]), ("_identity_head", data["identity_head"])):
            object.__setattr__(res, name, value)
        return res


def with_ancestors(resources: Mapping[str, Resource], keys: Iterable[str]) -> set[str]:
    """These resources (those that exist) and every resource they are built from."""
    out: set[str] = set()
    for key in keys:
        k: str | None = key
        while k is not None and k in resources and k not in out:
            out.add(k)
            k = resources[k].parent
    return out


def chain(resources: Mapping[str, Resource], key: str) -> list[str]:
    """The key and its ancestors, root first."""
    out: list[str] = []
    seen: set[str] = set()
    k: str | None = key
    while k is not None and k in resources and k not in seen:
        out.append(k)
        seen.add(k)
        k = resources[k].parent
    return out[::-1]


def descendants(resources: Mapping[str, Resource], key: str) -> list[str]:
    """Every resource built from this one, directly or not, parents before children."""
    children: dict[str, list[str]] = {}
    for k, r in resources.items():
        if r.parent is not None:
            children.setdefault(r.parent, []).append(k)
    out: list[str] = []
    todo = list(children.get(key, ()))
    while todo:
        k = todo.pop(0)
        out.append(k)
        todo += children.get(k, ())
    return out
