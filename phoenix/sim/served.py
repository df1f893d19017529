"""Whether another process serves the simulated host of a state dir (`python -m phoenix.sim`): its server.json.

Kept apart from the simulator itself, so that a run against a served simulator imports none of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..pve.endpoint import Endpoint

SERVER_FILE = "server.json"
PORTAINER_FILE = "portainer.json"  # the Portainer stand-in the simulator serves: its URL and CA file


def served(state_dir: Path) -> tuple[Endpoint, int] | None:
    """The simulator served for this state dir by another process, and its pid, if one runs."""
    path = Path(state_dir) / SERVER_FILE
    try:
        data = json.loads(path.read_text())
        pid = int(data["pid"])
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"phoenix.sim" not in cmdline.read_bytes():
            return None  # the pid was reused: the server died without removing its file
        return Endpoint.from_json(data["endpoint"]), pid
    except (OSError, ValueError, KeyError, TypeError):
        return None


def portainer_address(state_dir: Path) -> tuple[str, Path] | None:
    """The URL and CA file of the Portainer stand-in served with the simulated host of this state dir."""
    try:
        data = json.loads((Path(state_dir) / PORTAINER_FILE).read_text())
        return str(data["url"]), Path(data["ca"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
