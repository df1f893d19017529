"""`phoenix graph [--format mermaid|dot|svg] [--changed] [--from ID] [ID ...]`: the estate as a picture.

The verb is `doit plan --graph` (one planner: the decisions are the plan's own, read with its one listing and the
records it reads to explain a stale resource). This module is the drawing's I/O: the failures of the last run
(.cache/last-run.json), doit's status of the local `cloudinit:<vmid>` tasks, and Graphviz's `dot` for SVG; the graph
itself is built and rendered by phoenix.graph, pure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import PhoenixError
from ..graph import dot, mermaid
from ..graph.model import CLOUDINIT, Copy, build
from ..resources import Resource
from .status import copies_by_layer, copy_key, current, node_of
from .targets import UnknownTarget, resolve

FORMATS = ("mermaid", "dot", "svg")
FORMAT_HELP = ("mermaid (the default: a flowchart, which GitHub and GitLab draw in Markdown), dot (Graphviz), "
               "svg (needs Graphviz's dot)")
CHANGED_HELP = "only what a run would change on the host, and what it hangs from"
FROM_HELP = "only this layer (a task, guest id or name) and everything cloned from it or deployed to it"
EMPTY = {True: "nothing to change: every resource is up to date", False: "the estate has nothing to build"}


class Refused(PhoenixError):
    """A graph that cannot be drawn as asked, before anything is read: code is the exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def check(resources: Mapping[str, Resource], fmt: str, start: str, *, graph: bool = True, steps: bool = False) -> str | None:
    """The task --from names (None: the whole estate); Refused (exit 3, a bad doit command line) for a graph's options
    without --graph or with --steps, and for a name that is not in the estate, with what it might mean; (exit 2) for
    SVG without Graphviz's dot."""
    if not graph or steps:
        raise Refused("--format, --changed and --from go with --graph, and --graph draws no steps: "
                      "`doit plan --graph [--format mermaid|dot|svg] [--changed] [--from TASK]`", 3)
    if fmt == "svg" and shutil.which("dot") is None:
        raise Refused("--format svg needs Graphviz's dot, which is not installed: apt-get install graphviz "
                      "(or use --format mermaid or --format dot)", 2)
    if not start:
        return None
    try:
        return resolve(resources, start).key
    except UnknownTarget as e:
        raise Refused(str(e), 3) from None


def failed_last_run(path: Path, target: str, say: Callable[[str], None]) -> set[str]:
    """The tasks that failed in the last run on this target (.cache/last-run.json); none when there is no such run."""
    try:
        data = json.loads(path.read_text())
        tasks = data["tasks"] if data.get("target") == target else {}
        return {k for k, v in tasks.items() if v.get("outcome") == "failed"}
    except FileNotFoundError:
        return set()
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        say(f"phoenix: {path} cannot be read ({e}): the graph shows no failures of the last run")
        return set()


def render_reason(reasons: Mapping[str, Any], root: Path) -> str:
    """Why doit would run a cloudinit task, from its dependency status (files named relative to the project)."""

    def names(paths: Iterable[str]) -> str:
        out = []
        for p in paths:
            try:
                out.append(str(Path(p).relative_to(root)))
            except ValueError:
                out.append(str(p))
        return ", ".join(sorted(out))

    if reasons.get("missing_target"):
        return "not rendered yet"
    if reasons.get("missing_file_dep"):
        return f"{names(reasons['missing_file_dep'])} missing"
    for key, says in (("changed_file_dep", "changed"), ("added_file_dep", "added"), ("removed_file_dep", "removed")):
        if reasons.get(key):
            return f"{names(reasons[key])} {says}"
    return "its sources changed"


def renders(tasks: Iterable[Any], deps: Any, root: Path) -> dict[str, str | None]:
    """Each cloudinit task doit has, with why it would render again (None: up to date), as doit's own dependency manager
    says (it reads local files only: these tasks have no uptodate check that would ask the host)."""
    everything = {t.name: t for t in tasks}
    out: dict[str, str | None] = {}
    for name, task in everything.items():
        if name.startswith(f"{CLOUDINIT}:"):
            found = deps.get_status(task, everything, get_log=True)
            out[name] = None if found.status == "up-to-date" else render_reason(found.reasons, root)
    return out


def svg(text: str) -> str:
    try:
        done = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, timeout=300, check=False)
    except OSError as e:
        raise PhoenixError(f"Graphviz's dot cannot run: {e}") from None
    if done.returncode != 0:
        raise PhoenixError(f"Graphviz's dot failed: {(done.stderr.strip().splitlines() or ['no message'])[0]}")
    return done.stdout


def layer_copies(run: Any) -> dict[str, list[Copy]]:
    """Each layer's per-node copies in the run's listing, and whether each holds the layer's build."""
    out: dict[str, list[Copy]] = {}
    for layer, found in copies_by_layer(run.view.guests()).items():
        if layer in run.resources:
            facts = run.facts_of(run.resources[layer])
            out[layer] = [Copy(copy_key(c), node_of(c), current(c, facts)) for c in found]
    return out


def draw(run: Any, decisions: Mapping[str, Any], rendered: Mapping[str, str | None], *, fmt: str = "mermaid",
         changed: bool = False, start: str | None = None) -> str:
    """The picture of these decisions: every node with its state, the last run's failures marked."""
    members = len(run.view.cluster().nodes) > 1
    graph = build(run.resources, decisions, failed=failed_last_run(run.cache / "last-run.json", run.target, run.say),
                  renders=rendered, members=members, copies=layer_copies(run) if members else {})
    if start is not None:
        graph = graph.subtree(start)
    if changed:
        graph = graph.changed()
    if fmt == "mermaid":
        return mermaid.render(graph, EMPTY[changed])
    text = dot.render(graph, EMPTY[changed])
    return svg(text) if fmt == "svg" else text


def doit_args(fmt: str, changed: bool, start: str | None, keys: list[str]) -> list[str]:
    """`phoenix graph …` as the doit command line it runs."""
    return ["plan", "--graph", "--format", fmt, *(["--changed"] if changed else []),
            *(["--from", start] if start else []), *keys]
