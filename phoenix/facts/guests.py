"""What the host says about its guests, parsed from one bulk listing (pure).

Each Phoenix guest carries its record in its tags, which `/cluster/resources` lists for every guest
in one request: `phoenix`, `phx-id-<identity>`, `phx-b-<build id>`, `phx-s-<settings>`, and, while a bake
is under way, `phx-building` and `phx-run-<run id>` (the run that builds it). A guest is Phoenix's only with
the `phoenix` tag and a record (an identity or `phx-building`). The description holds the same record with
the digest of every input, for people and for explaining a rebuild.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from ..config.limits import RECORD_BUDGET

MANAGED = "phoenix"
BUILDING = "phx-building"
RECORD_MARK = "phoenix-record: "
DESCRIPTION_RULE = "\n\n---\nManaged by Phoenix: the record below says what this layer was built from.\n"


_RECORD_TAGS = {"id": "identity", "b": "build_id", "s": "settings_hash", "run": "owner",  # phx-<key>-<value>
                "copy": "copy_of"}


@dataclass(frozen=True)
class GuestFacts:
    vmid: int
    name: str = ""
    kind: str = "lxc"
    status: str = "stopped"
    template: bool = False
    tags: tuple[str, ...] = ()
    maxmem: int = 0
    maxcpu: int = 0
    maxdisk: int = 0
    node: str = ""             # the cluster member it is on
    hastate: str | None = None  # under HA (the listing's hastate: started, stopped, ...)
    # From the tags, read once here: a no-op run asks each guest for them.
    identity: str | None = field(init=False, default=None, compare=False)
    build_id: str | None = field(init=False, default=None, compare=False)
    settings_hash: str | None = field(init=False, default=None, compare=False)
    owner: str | None = field(init=False, default=None, compare=False)  # the run building it (phx-run-)
    copy_of: str | None = field(init=False, default=None, compare=False)  # a per-node copy of this layer (phx-copy-)

    def __post_init__(self) -> None:
        for tag in self.tags:
            if tag.startswith("phx-"):
                key, _, value = tag[4:].partition("-")
                name = _RECORD_TAGS.get(key)
                if name and value and getattr(self, name) is None:  # the first one counts
                    object.__setattr__(self, name, value)

    @property
    def tagged(self) -> bool:
        """It carries the `phoenix` tag (which a person can set by hand)."""
        return MANAGED in self.tags

    @property
    def managed(self) -> bool:
        """Phoenix's own: the `phoenix` tag and a record (an identity, or a bake under way)."""
        return MANAGED in self.tags and (self.identity is not None or BUILDING in self.tags)

    @property
    def building(self) -> bool:
        return BUILDING in self.tags

    @property
    def user_tags(self) -> tuple[str, ...]:
        return tuple(t for t in self.tags if t != MANAGED and not t.startswith("phx-"))


def split_tags(value: str | None) -> tuple[str, ...]:
    """PVE's tag list: separated by ';' (also ',' or spaces)."""
    return tuple(t for t in (value or "").replace(",", ";").replace(" ", ";").split(";") if t)


def parse_resources(items: list[dict[str, Any]]) -> dict[int, GuestFacts]:
    """Every guest of the cluster, on whichever node, from GET /cluster/resources (VMIDs are unique in a cluster)."""
    out = {}
    for item in items:
        if item.get("type") not in ("lxc", "qemu"):
            continue
        vmid = int(item["vmid"])
        out[vmid] = GuestFacts(vmid, str(item.get("name", "")), item["type"], str(item.get("status", "")),
                               bool(item.get("template")), split_tags(item.get("tags")),
                               int(item.get("maxmem") or 0), int(item.get("maxcpu") or 0), int(item.get("maxdisk") or 0),
                               str(item.get("node") or ""), str(item["hastate"]) if item.get("hastate") else None)
    return out


def record_tags(user_tags: list[str], identity: str, build_id: str, settings_hash: str) -> str:
    tags = [MANAGED, f"phx-id-{identity}", f"phx-b-{build_id}", f"phx-s-{settings_hash}", *sorted(set(user_tags))]
    return ";".join(tags)


def building_tags(user_tags: list[str], owner: str | None = None) -> str:
    """The tags of a guest while a run (owner: its id) builds it."""
    return ";".join([MANAGED, BUILDING, *([f"phx-run-{owner}"] if owner else []), *sorted(set(user_tags))])


def with_tags(facts: GuestFacts, tags: str, **changes: Any) -> GuestFacts:
    return replace(facts, tags=split_tags(tags), **changes)


def description(user_text: str, record: dict[str, Any]) -> str:
    """The user's text, then the record, kept within RECORD_BUDGET bytes whatever the estate: when it would not fit,
    the settings and then the input digests are left out (explanations then fall back to "changed")."""
    room = RECORD_BUDGET - len(DESCRIPTION_RULE) - len(RECORD_MARK) - 1
    body = json.dumps(record, sort_keys=True)
    for detail in ("settings", "inputs"):
        if len(body.encode()) <= room:
            break
        record = {k: v for k, v in record.items() if k != detail}
        body = json.dumps(record, sort_keys=True)
    return f"{user_text}{DESCRIPTION_RULE}{RECORD_MARK}{body}\n"


def parse_record(description_text: str | None) -> dict[str, Any]:
    """The record Phoenix wrote into a guest's description, or {}."""
    for line in (description_text or "").splitlines():
        if line.startswith(RECORD_MARK):
            try:
                return json.loads(line[len(RECORD_MARK):])
            except ValueError:
                return {}
    return {}
