"""How the renderers colour a node (pure): one fill and stroke per state, a thick red stroke for a failed last run."""

from __future__ import annotations

from .model import Node, State

# (fill, stroke): light fills with dark text read on GitHub's light and dark themes alike
COLOURS: dict[State, tuple[str, str]] = {
    State.UP_TO_DATE: ("#e8f5e9", "#2e7d32"),
    State.UPDATE: ("#fff8e1", "#f9a825"),
    State.REBUILD: ("#ffe0b2", "#e65100"),
    State.BUILD: ("#e3f2fd", "#1565c0"),
    State.RESTORE: ("#e0f7fa", "#00838f"),
    State.BLOCKED: ("#eeeeee", "#616161"),
}
TEXT = "#000000"
FAILED_STROKE = "#c62828"


def class_name(state: State) -> str:
    """A name for the state that is an identifier in every format: "up to date" -> "up_to_date"."""
    return state.name.lower()


def form(node: Node) -> str:
    """The shape a node is drawn with, by what it is: a template layer, an app guest, a host part, the Portainer server
    or an environment, a stack, a VM's cloud-init files."""
    if node.kind in ("lxc", "vm"):
        return "template" if node.role == "template" else "app"
    return node.kind if node.kind in ("host", "portainer", "stack", "cloudinit") else "app"
