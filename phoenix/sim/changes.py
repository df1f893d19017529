"""Which saved records a write to the simulator, or a task it ran, may have changed (pure: no server).

A request on /nodes/{node}/lxc/{vmid}/… changes that guest, and a clone the new one (`newid`); a create on
/nodes/{node}/lxc the guest of its `vmid`. Pools are compared at every save (they are few and small). Any
other write (qemu, storage, node-wide actions, …) may change anything: every guest and the storages'
volumes are compared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_PREFIX = r"^/api2/(?:json|extjs)"
_ONE_CT = re.compile(_PREFIX + r"/nodes/[^/]+/lxc/(\d+)(?:/|$)")
_CREATE = re.compile(_PREFIX + r"/nodes/[^/]+/lxc/?$")
_NO_GUEST = re.compile(_PREFIX + r"/(?:pools|access)(?:/|$)")
CONTROL = "/phoenix/sim"  # the simulator's own routes (not PVE's), under this prefix
_CONTROL_CT = re.compile("^" + CONTROL + r"/\w+/(\d+)$")


@dataclass(frozen=True)
class Touched:
    """The guests to compare with their saved records (None: every guest), and whether volumes are compared too."""

    vmids: frozenset[int] | None
    volumes: bool


EVERYTHING = Touched(None, True)


def _ids(*values: Any) -> frozenset[int]:
    return frozenset(int(v) for v in values if isinstance(v, (int, str)) and str(v).isdigit())


def touched(method: str, path: str, params: Mapping[str, Any]) -> Touched:
    """What a write request may have changed (a GET changes nothing)."""
    if method in ("GET", "HEAD"):
        return Touched(frozenset(), False)
    if found := _ONE_CT.match(path) or _CONTROL_CT.match(path):
        return Touched(_ids(found.group(1), params.get("newid")), False)
    if _CREATE.match(path):
        return Touched(_ids(params.get("vmid")), False)
    if _NO_GUEST.match(path):
        return Touched(frozenset(), False)
    return EVERYTHING


def task_touched(vmid: int | None, tid: Any) -> Touched:
    """What a task may have changed: its guest and the guest of its id (a clone's source); else anything."""
    ids = _ids(*(v for v in (vmid, tid) if v is not None))
    return Touched(ids, False) if ids else EVERYTHING
