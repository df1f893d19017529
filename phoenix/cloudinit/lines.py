"""Lines of rendered cloud-init files, and the template lines they came from (so a refusal names a line a person
can open the template at). Jinja keeps no map from output to source: a template line is the one whose literal text,
with its `{{ … }}` and `{% … %}` taken as wildcards, matches the rendered line, the nearest such when several do."""

from __future__ import annotations

import re
from typing import Any

import yaml

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}")


def rendered_line(text: str, path: tuple[Any, ...], key: str | None = None) -> int | None:
    """The line (1-based) of the value at path in a YAML text (of its key, when it is a mapping's), or of the key
    `key` of the mapping there."""
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in (*path, *([key] if key is not None else [])):
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)),
                        None)
            if pair is None:
                return None
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return None
    return line


def template_line(template: str, rendered: str, line: int) -> int | None:
    """The template line that rendered line `line` came from, when its literal text says so."""
    lines = rendered.splitlines()
    if not 1 <= line <= len(lines):
        return None
    target = lines[line - 1]
    candidates = []
    for i, t in enumerate(template.splitlines()):
        parts = _TAG.split(t)
        if not "".join(parts).strip():
            continue  # only tags (or blank): says nothing of where it lands
        if re.fullmatch(".*?".join(re.escape(p) for p in parts), target):
            candidates.append(i + 1)
    return min(candidates, key=lambda n: abs(n - line)) if candidates else None
