"""Check rendered cloud-init files before anything touches a host: cloud-init's own JSON schemas (cloud-config v1,
network-config v1 and v2, shipped in schemas/ as cloud-init publishes them), and what Proxmox and cloud-init
refuse that the schemas allow (size, `to: default` on Debian 12's cloud-init).

A problem names the line it is at: in the template the file was rendered from when the caller gives the templates'
text (lines.py finds the template line a rendered line came from), else in the rendered file."""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .. import yamltext
from ..errors import Problem, human_path
from .lines import rendered_line, template_line
from .render import SNIPPET_MAX, Rendered

SCHEMAS = Path(__file__).parent / "schemas"
SCHEMA_NAMES = {"schema-cloud-config-v1.json": "cloud-init's cloud-config schema (v1)",
                "schema-network-config-v1.json": "cloud-init's network-config schema (v1)",
                "schema-network-config-v2.json": "cloud-init's network-config schema (v2, netplan)"}
META_FIX = "add the line instance-id: {{ instance_id | tojson }} (Phoenix gives each build its own)"


@functools.cache
def _validator(name: str) -> Any:
    schema = json.loads((SCHEMAS / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


@dataclass(frozen=True)
class Finding:
    """One problem of one rendered file: its JSON path, and where in the file it is (a key to find, or a line)."""

    name: str
    path: tuple[Any, ...] | None
    message: str
    key: str | None = None   # the key the problem is about, inside path (an unknown key)
    line: int | None = None  # a rendered line given outright (a YAML syntax error)


def _path(parts: Any) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _unknown_keys(error: Any) -> list[str]:
    """The keys an additionalProperties error is about (those neither properties nor patternProperties allow)."""
    schema, instance = error.schema, error.instance
    if not isinstance(schema, dict) or not isinstance(instance, dict):
        return []
    known = schema.get("properties") or {}
    patterns = list(schema.get("patternProperties") or {})
    return [k for k in instance if k not in known and not any(re.search(p, str(k)) for p in patterns)]


def _schema_findings(name: str, data: Any, schema: str) -> list[Finding]:
    out = []
    for e in sorted(_validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path)):
        at = tuple(e.absolute_path)
        unknown = _unknown_keys(e) if e.validator == "additionalProperties" else []
        if not unknown:
            out.append(Finding(name, at, e.message))
            continue
        names = list(e.schema.get("properties") or {})
        where = "top-level key" if not at else "key"
        for key in unknown:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.75)
            hint = f"did you mean {close[0]!r}? " if close else ""
            said = f"unknown {where} {key!r}: {SCHEMA_NAMES[schema]} has no such key; {hint}fix its name or remove it"
            out.append(Finding(name, at, said, key=str(key)))
    return out


def _yaml(name: str, text: str) -> tuple[Any, list[Finding]]:
    try:
        return yamltext.safe_load(text), []
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at column {mark.column + 1}" if mark else ""
        # an error found at the end of the text (an unclosed bracket) is on its last line
        last = max(len(text.splitlines()), 1)
        line = min(mark.line + 1, last) if mark else None
        if mark and mark.line + 1 > last:
            at = ""
        return None, [Finding(name, None, f"invalid YAML{at}: {getattr(e, 'problem', e)}", line=line)]


def findings(rendered: Rendered) -> list[Finding]:
    """Every problem of the rendered files."""
    out: list[Finding] = []
    for name, text in rendered.files.items():
        size = len(text.encode())
        if size > SNIPPET_MAX:
            out.append(Finding(name, (), f"{size} bytes: Proxmox reads at most {SNIPPET_MAX} bytes of a cicustom "
                                         "snippet; make it smaller (e.g. fetch large files in runcmd)"))
    user = rendered.files["user-data"]
    if not user.startswith("#cloud-config\n"):
        out.append(Finding("user-data", None, "user-data must start with the line #cloud-config", line=1))
    data, found = _yaml("user-data", user)
    out += found
    if not found:
        if not isinstance(data, dict):
            out.append(Finding("user-data", (), "user-data must be a YAML mapping"))
        else:
            out += _schema_findings("user-data", data, "schema-cloud-config-v1.json")
    data, found = _yaml("network-config", rendered.files["network-config"])
    out += found
    if not found:
        out += _network(data)
    data, found = _yaml("meta-data", rendered.files["meta-data"])
    out += found
    if not found and not (isinstance(data, dict) and isinstance(data.get("instance-id"), str) and data["instance-id"]):
        out.append(Finding("meta-data", ("instance-id",), f"meta-data needs an instance-id (a string): {META_FIX}"))
    return out


def validate(rendered: Rendered, where: Mapping[str, str], templates: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem of the rendered files; where: file name -> how to name it in a message; templates: file name ->
    the text of the template it was rendered from (to name the template's line)."""
    return [problem(rendered, f, where[f.name], (templates or {}).get(f.name)) for f in findings(rendered)]


def problem(rendered: Rendered, f: Finding, where: str, template: str | None) -> Problem:
    """A finding as a Problem: 'line 26' of the template (or 'rendered line 26'), with the JSON path when it says more."""
    text = rendered.files[f.name]
    line = f.line if f.line is not None else rendered_line(text, f.path or (), f.key) if f.path is not None else None
    jpath = _path(f.path) if f.path is not None else ""
    if f.key is not None or f.path == ():
        jpath = ""  # a key at the top: its line says where
    if line is None:
        return Problem(where, jpath or "$", f.message)
    own = template_line(template, text, line) if template is not None else None
    at = f"line {own}" if own is not None else f"line {line} of the rendered file" if template is not None \
        else f"line {line}"
    return Problem(where, f"{at} ({human_path(jpath)})" if jpath else at, f.message)


def _network(data: Any) -> list[Finding]:
    name = "network-config"
    if not isinstance(data, dict):
        return [Finding(name, (), "network-config must be a YAML mapping")]
    inner = data.get("network", data)
    version = inner.get("version") if isinstance(inner, dict) else None
    if version not in (1, 2):
        return [Finding(name, ("version",), "network-config needs version: 2 (netplan) or version: 1")]
    out = _schema_findings(name, data, f"schema-network-config-v{version}.json")
    prefix: tuple[Any, ...] = ("network",) if "network" in data else ()
    if version == 2:
        for kind in ("ethernets", "bonds", "bridges", "vlans"):
            for nic, conf in (inner.get(kind) or {}).items():
                for i, route in enumerate((conf or {}).get("routes") or []):
                    if isinstance(route, dict) and route.get("to") == "default":
                        out.append(Finding(name, (*prefix, kind, nic, "routes", i, "to"),
                                           "Debian 12's cloud-init (22.4) refuses `to: default` though the schema "
                                           "allows it: write `to: 0.0.0.0/0`"))
    return out
