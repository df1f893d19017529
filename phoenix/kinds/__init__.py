"""The kinds of resource Phoenix builds, each in its own module: `lxc` (container layers) today."""

from __future__ import annotations

from .base import Kind
from .lxc import LXC

KINDS: dict[str, Kind] = {LXC.name: LXC}
