"""The kinds of resource Phoenix builds, each in its own module: `lxc` (container layers) today."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .host import HOST
from .lxc import LXC
from .vm import VM

if TYPE_CHECKING:
    from .base import Kind

KINDS: dict[str, Kind] = {HOST.name: HOST, LXC.name: LXC, VM.name: VM}
