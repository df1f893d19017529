"""What Phoenix sends Portainer for a stack (pure): the Compose text, with the environment's files as inline configs.

Files (`source` -> `destination_in_container`) reach the containers without a copy on the Docker host: each becomes
a top-level Compose config with inline `content` (Compose 2.23+), mounted at its destination in every service of
the stack. `$` in a file is doubled, so Compose does not interpolate it. A stack without files is sent as written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import yaml

from .. import yamltext


def config_name(destination: str) -> str:
    return "phoenix_" + hashlib.sha256(destination.encode()).hexdigest()[:10]


def compose_with_files(text: str, files: Sequence[tuple[str, str]]) -> str:
    """The Compose text with each (destination, content) mounted in every service as an inline config."""
    if not files:
        return text
    data: dict[str, Any] = yamltext.safe_load(text)
    configs = dict(data.get("configs") or {})
    for destination, content in files:
        configs[config_name(destination)] = {"content": content.replace("$", "$$")}
    data["configs"] = configs
    for service in (data.get("services") or {}).values():
        mounted = [c for c in service.get("configs") or []
                   if not (isinstance(c, dict) and str(c.get("source", "")).startswith("phoenix_"))]
        mounted += [{"source": config_name(d), "target": d} for d, _ in files]
        service["configs"] = mounted
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)

