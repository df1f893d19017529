"""The context file scripts read inside a guest: /etc/phoenix/context.json, and the same flattened to PHX_*
shell variables in /etc/phoenix/context.env (pure). Each kind builds the context of its guests."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}_{re.sub(r'[^A-Za-z0-9]', '_', str(k)).upper()}", v, out)
    elif isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            out[prefix] = ",".join("" if v is None else str(v) for v in value)
        else:
            out[prefix] = json.dumps(value)
    elif isinstance(value, bool):
        out[prefix] = "true" if value else "false"
    else:
        out[prefix] = "" if value is None else str(value)


def to_env(context: dict[str, Any]) -> str:
    """The context as sourceable shell assignments: PHX_VLLM_MODEL='Qwen/...', lists comma-joined."""
    flat: dict[str, str] = {}
    _flatten("PHX", context, flat)
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(flat.items()))


def to_json(context: dict[str, Any]) -> str:
    return json.dumps(context, indent=2, sort_keys=True) + "\n"
