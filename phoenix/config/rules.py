"""What a config value must be, said as a person would say it: the rule a refusal names.

`Rule("…")` in a field's annotation is what the loader says when the value is refused for its type, pattern or
bounds (`"5" is not a guest id …`); `PATTERNS` does the same for the regular expressions the models use, and
`describe` names a union's members, so one mistake in a field that takes several shapes is one line.
"""

from __future__ import annotations

import ipaddress
import json
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BeforeValidator, Field

HOSTNAME = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
MAC = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"
SNAPSHOT = r"^[A-Za-z][A-Za-z0-9_-]{1,39}$"
TAG = r"^[a-z0-9_][a-z0-9_+.-]*$"
ABSOLUTE = r"^/[^\s,=]*$"
CTID_KEY = r"^[1-9][0-9]{2,8}$"
USERNAME = r"^[a-z_][a-z0-9_-]{0,31}$"
CONTAINER_FILE = r"^/[^\s]*$"
STORAGE_ID = r"^[a-z][a-z0-9_.-]*[a-z0-9]$"  # PVE's pve-storage-id
VMID_MIN, VMID_MAX = 100, 999999999


@dataclass(frozen=True)
class Rule:
    """The rule of a field, for its refusals: 'a guest id (VMID): a whole number from 100 to 999999999'."""

    text: str


PATTERNS: dict[str, str] = {
    HOSTNAME: "a hostname: letters, digits and '-', at most 63 characters, not starting or ending with '-' "
              "(e.g. vllm-qwen3)",
    MAC: "a MAC address: six pairs of hex digits joined by ':' (e.g. 52:54:00:12:34:56)",
    SNAPSHOT: "a snapshot name: a letter, then 1 to 39 letters, digits, '_' or '-' (e.g. base-v1)",
    TAG: "a Proxmox tag: lower-case letters, digits, '_', '+', '.' and '-', not starting with '+', '.' or '-' "
         "(e.g. gpu)",
    CONTAINER_FILE: "an absolute path in the container, without spaces (e.g. /app/.env)",
    ABSOLUTE: "an absolute path: starting with '/', without spaces, ',' or '=' (e.g. /data)",
    CTID_KEY: f"a CTID: a whole number from {VMID_MIN} to {VMID_MAX}, written as a string key (e.g. \"950\")",
    STORAGE_ID: "a Proxmox storage id: a lower-case letter, then lower-case letters, digits, '-', '_' or '.', "
                "ending in a letter or digit (e.g. local-lvm)",
    USERNAME: "a user name: a lower-case letter or '_', then up to 31 lower-case letters, digits, '_' or '-' "
              "(e.g. phoenix)",
}


def _require_prefix(value: object) -> object:
    """A bare address would be a /32 (a network of one): Proxmox and cloud-init want the prefix written."""
    if isinstance(value, str) and value != "dhcp" and "/" not in value:
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            return value  # not an address at all: the type says so
        raise ValueError(f'"{value}" has no prefix: write the address with its network prefix, e.g. {value}/24')
    return value


IPV4_WITH_PREFIX = "an IPv4 address with a prefix (e.g. 10.0.0.150/24)"
IPv4WithPrefix = Annotated[ipaddress.IPv4Interface, BeforeValidator(_require_prefix), Rule(IPV4_WITH_PREFIX)]
IPv4 = Annotated[ipaddress.IPv4Address, Rule("an IPv4 address (e.g. 10.0.0.1)")]
VmId = Annotated[int, Field(ge=VMID_MIN, le=VMID_MAX),
                 Rule(f"a guest id (VMID): a whole number from {VMID_MIN} to {VMID_MAX}, as Proxmox allows")]

_NAMES: dict[Any, str] = {
    str: "a string", int: "a whole number", float: "a number", bool: "true or false",
    ipaddress.IPv4Interface: IPV4_WITH_PREFIX, ipaddress.IPv4Address: "an IPv4 address (e.g. 10.0.0.1)",
    list: "a list", dict: "an object",
}


def rule_of(annotation: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> str | None:
    """The Rule given in an annotation (Annotated[...] metadata) or a field's metadata."""
    found = [m for m in metadata if isinstance(m, Rule)]
    if get_origin(annotation) is Annotated:
        found += [m for m in get_args(annotation)[1:] if isinstance(m, Rule)]
    return found[0].text if found else None


def is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def members(annotation: Any) -> list[Any]:
    """A union's members, None left out."""
    return [a for a in get_args(annotation) if a is not type(None)]


def describe(annotation: Any) -> str:
    """'"dhcp"', 'an IPv4 address with a prefix (…)', 'a whole number', 'an object (name, environment)'."""
    rule = rule_of(annotation)
    if rule:
        return rule
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Literal:
        return " or ".join(json.dumps(v) for v in get_args(annotation))
    if is_union(annotation):
        return union_rule(annotation)
    origin = get_origin(annotation) or annotation
    if origin in _NAMES:
        return _NAMES[origin]
    fields = getattr(annotation, "model_fields", None)
    if fields is not None:
        return f"an object ({', '.join(f.alias or n for n, f in fields.items())})"
    return getattr(annotation, "__name__", str(annotation))


def union_rule(annotation: Any) -> str:
    """Every member said, literals last: 'an IPv4 address with a prefix (e.g. 10.0.0.150/24) or "dhcp"'."""
    def literal(a: Any) -> bool:
        while get_origin(a) is Annotated:
            a = get_args(a)[0]
        return get_origin(a) is Literal

    ordered = sorted(members(annotation), key=literal)
    return " or ".join(describe(m) for m in ordered)


def control(text: str) -> bool:
    """Whether text holds a control character (NUL, a newline, DEL, …): never part of a path Phoenix writes."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def relative_problem(value: str, where: str) -> str | None:
    """Why a path meant relative to `where` (the config dir, cloudinit/) is refused, or None: absolute, `~`, a `..`
    that climbs out, or a control character (refused, not normalised)."""
    if control(value):
        return f"{value!r} has a control character: a path has none"
    if value.startswith(("/", "~")):
        return f"{value!r} is an absolute path: give it relative to {where}"
    depth = 0
    for part in value.split("/"):
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            return f"{value!r} climbs out of {where} with '..': give a path inside it"
    return None


def inside(path: Path, top: Path) -> bool:
    """Whether the file path really is (links followed) lies inside top (resolved too)."""
    try:
        return path.resolve().is_relative_to(top.resolve())
    except (OSError, RuntimeError):  # a loop of links
        return False


def absolute_problem(value: str) -> str | None:
    """Why a path on the node (a storage's directory, a mount point) is refused, or None: it must be absolute and
    already normal (no '..', '.', '//' or trailing '/'), without control characters (refused, not normalised)."""
    import posixpath

    if control(value):
        return f"{value!r} has a control character: a path has none"
    if not value.startswith("/"):
        return f"{value!r} is not an absolute path (e.g. /mnt/data)"
    normal = posixpath.normpath(value)
    if normal.startswith("//"):
        normal = normal[1:]
    if ".." in value.split("/"):
        return f"{value!r} has '..' in it: write the directory it means ({normal})"
    if normal != value:
        return f"{value!r} is not written as Proxmox keeps it: write {normal}"
    return None
