"""A Compose file checked before it is deployed: it parses, has the Compose specification's shape, and every variable
it uses without a default has a value in the chosen environment.

The full compose-spec JSON schema is checked too when PHOENIX_COMPOSE_SCHEMA names a copy of it (the tests use the
upstream schema); Phoenix does not carry a copy of its own.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

TOP_LEVEL = {"version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models"}
# $$ is a literal dollar; ${VAR}, $VAR, ${VAR:?msg}, ${VAR?msg} need a value; ${VAR:-x}, ${VAR-x}, ${VAR:+x}, ${VAR+x} do not
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def required_variables(text: str) -> list[str]:
    """The variables a Compose file needs a value for, in order of first use."""
    out: list[str] = []
    for m in _VAR.finditer(text):
        if m.group(0) == "$$":
            continue
        name, op = m.group(1) or m.group(3), m.group(2)
        if (op is None or op in ("?", ":?")) and name not in out:
            out.append(name)
    return out


def shape_problems(data: Any) -> list[str]:
    """What the Compose specification's shape does not allow, at its top level and in its services."""
    if not isinstance(data, dict):
        return ["not a Compose file: the top level must be a mapping"]
    out = [f"unknown top-level key {k!r}" for k in data if k not in TOP_LEVEL and not str(k).startswith("x-")]
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        return [*out, "no services: a Compose file needs services"]
    for name, service in services.items():
        if not isinstance(service, dict):
            out.append(f"service {name!r} must be a mapping")
        elif "image" not in service and "build" not in service:
            out.append(f"service {name!r} needs image (or build)")
    return out


def schema_problems(data: Any) -> list[str]:
    """The compose-spec JSON schema's verdict, when PHOENIX_COMPOSE_SCHEMA names it (else nothing is said)."""
    path = os.environ.get("PHOENIX_COMPOSE_SCHEMA")
    if not path:
        return []
    import jsonschema

    schema = json.loads(Path(path).read_text())
    return [f"compose-spec: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(jsonschema.Draft7Validator(schema).iter_errors(data), key=lambda e: list(map(str, e.path)))]


def compose_problems(path: Path, variables: set[str]) -> list[str]:
    """Everything wrong with the Compose file at path for an environment that sets these variables."""
    import yaml

    from .. import yamltext

    try:
        text = path.read_text(encoding="utf-8")
        data = yamltext.safe_load(text)
    except (OSError, UnicodeDecodeError) as e:
        return [f"{path}: cannot be read: {e}"]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        return [f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}"]
    out = [f"{path}: {p}" for p in (*shape_problems(data), *schema_problems(data))]
    missing = [v for v in required_variables(text) if v not in variables]
    if missing:
        out.append(f"{path} uses {', '.join('${' + v + '}' for v in missing)} without a default: give "
                   f"{'it' if len(missing) == 1 else 'them'} a value in this environment's variables")
    return out
