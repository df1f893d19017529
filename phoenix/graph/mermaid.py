"""The graph as a Mermaid flowchart (pure), the form GitHub and GitLab draw in Markdown (```mermaid fences).

Every label is a quoted string in which each character outside a small safe set is an entity code (`#35;` for `#`),
so any name is valid Mermaid; node ids are made from the keys (letters, digits, `_`), unique.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .model import Graph, Relation, State
from .style import COLOURS, FAILED_STROKE, TEXT, class_name, form

SAFE = re.compile(r"[A-Za-z0-9 .,:_/()@+=*!?%~$'\-\[\]{}]")
KEYWORDS = {"end", "graph", "flowchart", "subgraph", "direction", "class", "classdef", "click", "style", "linkstyle",
            "default", "call", "href", "callback", "interpolate"}
ARROWS = {Relation.CLONED_FROM: "-->", Relation.DEPLOYED_TO: "==>", Relation.NEEDS: "-.->", Relation.COPY_OF: "--o"}
SHAPES = {"template": ('("', '")'), "app": ('["', '"]'), "host": ('{{"', '"}}'), "portainer": ('[["', '"]]'),
          "stack": ('[/"', '"/]'), "cloudinit": ('>"', '"]')}


def text(value: str) -> str:
    """A label's text with every character outside the safe set as Mermaid's entity code (#35; is '#')."""
    return "".join(ch if SAFE.fullmatch(ch) else f"#{ord(ch)};" for ch in value)


def ids(keys: Iterable[str]) -> dict[str, str]:
    """A Mermaid node id for each key: the key's letters, digits and `_` (others become `_`), unique, never a keyword."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for key in keys:
        base = re.sub(r"[^A-Za-z0-9_]", "_", key)
        if not base[:1].isalpha() or base.lower() in KEYWORDS:
            base = f"n_{base}"
        found, n = base, 1
        while found in used:
            n += 1
            found = f"{base}_{n}"
        used.add(found)
        out[key] = found
    return out


def render(graph: Graph, empty: str = "nothing to draw") -> str:
    """The flowchart (BT: each arrow points up, so base layers are at the top): an arrow from each node to what it is
    cloned from, deployed to or needs, a class (colour) per state and one for a failed last run. A graph without nodes
    is one node saying `empty`."""
    nid = ids(graph.nodes)
    lines = ["flowchart BT"]
    if not graph.nodes:
        lines.append(f'  nothing["{text(empty)}"]')
    for key, node in graph.nodes.items():
        opening, closing = SHAPES[form(node)]
        lines.append(f"  {nid[key]}{opening}{'<br/>'.join(text(line) for line in node.lines)}{closing}")
    for e in graph.edges:
        lines.append(f"  {nid[e.source]} {ARROWS[e.relation]}|{text(e.relation)}| {nid[e.target]}")
    states = [s for s in State if any(n.state == s for n in graph.nodes.values())]
    for s in states:
        fill, stroke = COLOURS[s]
        dash = ",stroke-dasharray:4 3" if s == State.BLOCKED else ""
        lines.append(f"  classDef {class_name(s)} fill:{fill},stroke:{stroke},color:{TEXT}{dash}")
    failed = [nid[k] for k, n in graph.nodes.items() if n.failed]
    if failed:
        lines.append(f"  classDef failed stroke:{FAILED_STROKE},stroke-width:3px")
    for s in states:
        lines.append(f"  class {','.join(nid[k] for k, n in graph.nodes.items() if n.state == s)} {class_name(s)}")
    if failed:
        lines.append(f"  class {','.join(failed)} failed")
    return "\n".join(lines) + "\n"
