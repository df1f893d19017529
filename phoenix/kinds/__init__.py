"""The kinds of resource Phoenix builds, each in its own module: `host` (the node's parts), `lxc` (container
layers), `portainer` (the server's token, the guests' environments) and `stack` (Compose stacks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .host import HOST
from .lxc import LXC
from .portainer import PORTAINER, STACK
from .vm import VM

if TYPE_CHECKING:
    from .base import Kind

KINDS: dict[str, Kind] = {HOST.name: HOST, LXC.name: LXC, VM.name: VM, PORTAINER.name: PORTAINER,
                          STACK.name: STACK}
