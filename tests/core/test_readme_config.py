"""Every key of the config files is documented in the README: a field added to a pydantic model without a word for
users fails here (the schemas in etc/ are generated from the models, and a test keeps them current)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO

SCHEMAS = ("phoenix_hypervisor_config", "phoenix_lxc_configs", "phoenix_vm_configs", "phoenix_stacks_config")
SECRET_FILE = re.compile(r"^[a-z_]+_file$")  # secrets.<name>_file: documented as a pattern with the names listed


def keys(schema: dict[str, Any], node: dict[str, Any], path: tuple[str, ...], out: set[tuple[str, ...]]) -> None:
    """Every property of the schema, as a path of names, following $ref, combinators, maps and lists."""
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    for combinator in ("anyOf", "allOf", "oneOf"):
        for sub in node.get(combinator, []):
            keys(schema, sub, path, out)
    for name, sub in node.get("properties", {}).items():
        if (*path, name) not in out:
            out.add((*path, name))
            keys(schema, sub, (*path, name), out)
    for child in ("additionalProperties", "items"):
        if isinstance(node.get(child), dict):
            keys(schema, node[child], path, out)
    for sub in node.get("patternProperties", {}).values():
        keys(schema, sub, path, out)


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_config_key_is_named_in_the_readme(name: str):
    readme = (REPO / "README.md").read_text()
    schema = json.loads((REPO / "etc" / f"{name}.schema.json").read_text())
    found: set[tuple[str, ...]] = set()
    keys(schema, schema, (), found)
    assert len(found) > 10, found  # the walk reached the models
    undocumented = sorted(".".join(p) for p in found if p[-1] != "$schema" and not (
        re.search(rf"`[^`]*\b{re.escape(p[-1])}\b[^`]*`", readme)
        or any(f"`{p[-1][:i + 1]}*`" in readme for i, c in enumerate(p[-1]) if c == "_")  # the flat `vllm_*` keys
        or (p[0] == "secrets" and SECRET_FILE.match(p[-1]) and p[-1][:-len("_file")] in readme)))
    assert not undocumented, f"config keys of {name} that README.md never names: {undocumented}"


def test_the_walk_sees_a_key_the_readme_does_not_name(tmp_path: Path):
    schema = {"properties": {"known": {"$ref": "#/$defs/X"}}, "$defs": {"X": {"properties": {"zzz_unheard_of": {}}}}}
    found: set[tuple[str, ...]] = set()
    keys(schema, schema, (), found)
    assert ("known", "zzz_unheard_of") in found
    assert not re.search(r"`[^`]*\bzzz_unheard_of\b[^`]*`", (REPO / "README.md").read_text())
