"""The graph in Graphviz's DOT language (pure): what `dot -Tsvg` draws, and what any DOT tool reads.

Node ids are the task keys as quoted strings; every string escapes `\\`, `"` and `&` (and a line break is `\\n`),
so any name is valid DOT and is drawn as it is. Each node's tooltip (shown on hover in the SVG) repeats its label on
one line, with its kind.
"""

from __future__ import annotations

from .model import Graph, Relation, State
from .style import COLOURS, FAILED_STROKE, TEXT, form

STYLES = {Relation.CLONED_FROM: "solid", Relation.DEPLOYED_TO: "bold", Relation.NEEDS: "dashed",
          Relation.COPY_OF: "dotted"}
SHAPES = {"template": ("box", "rounded,filled"), "app": ("box", "filled"), "host": ("hexagon", "filled"),
          "portainer": ("component", "filled"), "stack": ("parallelogram", "filled"), "cloudinit": ("note", "filled")}


def quote(value: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, `&` as `&amp;` (Graphviz reads HTML entities in
    labels), line breaks as DOT's \\n (a centred line)."""
    body = value.replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ")
    return '"' + body.replace("\n", "\\n") + '"'


def render(graph: Graph, empty: str = "nothing to draw") -> str:
    """A digraph: base layers at the top, an edge up from each node to what it is cloned from, deployed to or needs."""
    lines = ["digraph estate {", "  rankdir=BT;", '  node [fontname="Helvetica", fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=9];']
    if not graph.nodes:
        lines.append(f"  nothing [shape=plaintext, label={quote(empty)}];")
    for key, node in graph.nodes.items():
        fill, stroke = COLOURS[node.state]
        shape, style = SHAPES[form(node)]
        if node.state == State.BLOCKED:
            style += ",dashed"
        attrs = [f"label={quote(chr(10).join(node.lines))}", f"tooltip={quote(' | '.join((node.kind, *node.lines)))}",
                 f"shape={shape}", f'style="{style}"', f'fillcolor="{fill}"', f'fontcolor="{TEXT}"',
                 f'color="{FAILED_STROKE if node.failed else stroke}"', *(("penwidth=3",) if node.failed else ())]
        lines.append(f"  {quote(key)} [{', '.join(attrs)}];")
    for e in graph.edges:
        lines.append(f"  {quote(e.source)} -> {quote(e.target)} [label={quote(e.relation)}, style={STYLES[e.relation]}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
