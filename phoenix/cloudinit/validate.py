"""Check rendered cloud-init files before anything touches a host: cloud-init's own JSON schemas (cloud-config v1,
network-config v1 and v2, shipped in schemas/ as cloud-init publishes them), and what Proxmox and cloud-init
refuse that the schemas allow (size, `to: default` on Debian 12's cloud-init)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import Problem
from .render import SNIPPET_MAX, Rendered

SCHEMAS = Path(__file__).parent / "schemas"


@functools.cache
def _validator(name: str) -> Any:
    schema = json.loads((SCHEMAS / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def _path(parts: Any) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _schema_problems(where: str, data: Any, schema: str) -> list[Problem]:
    errors = sorted(_validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    return [Problem(where, _path(e.absolute_path), e.message) for e in errors]


def _yaml(where: str, text: str) -> tuple[Any, list[Problem]]:
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        return None, [Problem(where, "$", f"invalid YAML{at}: {getattr(e, 'problem', e)}")]


def validate(rendered: Rendered, where: dict[str, str]) -> list[Problem]:
    """Every problem of the rendered files; where: file name -> how to name it in a message."""
    out: list[Problem] = []
    for name, text in rendered.files.items():
        size = len(text.encode())
        if size > SNIPPET_MAX:
            out.append(Problem(where[name], "$", f"{size} bytes: Proxmox reads at most {SNIPPET_MAX} bytes of a "
                                                 "cicustom snippet; make it smaller (e.g. fetch large files in runcmd)"))
    user = rendered.files["user-data"]
    if not user.startswith("#cloud-config\n"):
        out.append(Problem(where["user-data"], "line 1", "user-data must start with the line #cloud-config"))
    data, found = _yaml(where["user-data"], user)
    out += found
    if not found:
        if not isinstance(data, dict):
            out.append(Problem(where["user-data"], "$", "user-data must be a YAML mapping"))
        else:
            out += _schema_problems(where["user-data"], data, "schema-cloud-config-v1.json")
    data, found = _yaml(where["network-config"], rendered.files["network-config"])
    out += found
    if not found:
        out += _network(where["network-config"], data)
    data, found = _yaml(where["meta-data"], rendered.files["meta-data"])
    out += found
    if not found and not (isinstance(data, dict) and isinstance(data.get("instance-id"), str) and data["instance-id"]):
        out.append(Problem(where["meta-data"], "$.instance-id", "meta-data needs an instance-id (a string)"))
    return out


def _network(where: str, data: Any) -> list[Problem]:
    if not isinstance(data, dict):
        return [Problem(where, "$", "network-config must be a YAML mapping")]
    inner = data.get("network", data)
    version = inner.get("version") if isinstance(inner, dict) else None
    if version not in (1, 2):
        return [Problem(where, "$.version", "network-config needs version: 2 (netplan) or version: 1")]
    out = _schema_problems(where, data, f"schema-network-config-v{version}.json")
    if version == 2:
        for kind in ("ethernets", "bonds", "bridges", "vlans"):
            for nic, conf in (inner.get(kind) or {}).items():
                for i, route in enumerate((conf or {}).get("routes") or []):
                    if isinstance(route, dict) and route.get("to") == "default":
                        out.append(Problem(where, f"$.{kind}.{nic}.routes[{i}].to",
                                           "Debian 12's cloud-init (22.4) refuses `to: default` though the schema "
                                           "allows it: write `to: 0.0.0.0/0`"))
    return out
