"""`phoenix graph` and `doit plan --graph`: the estate as a picture, with the plan's own states and reasons.

The pure part (edges, --changed, --from, escaping) on the example's model; the command end to end on the simulated
host (states after a change, the request count, failures of the last run, refusals). Mermaid is checked with
Mermaid's own parser (.ci/mermaid, installed by bootstrap.sh), DOT with Graphviz's dot."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

from phoenix.config.estate import load_estate
from phoenix.doitx import current, tasks
from phoenix.graph import dot, mermaid
from phoenix.graph.model import LEGEND, Copy, Edge, Graph, Node, Relation, State, build
from phoenix.model import of_estate
from phoenix.plan import Action, Decision, Why

from .conftest import NODE, REPO, Checkout, audited, copy_project, doit_command

CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
MERMAID = REPO / ".ci" / "mermaid"
LISTING = ("GET", "/api2/json/cluster/resources")
C, D, N = Relation.CLONED_FROM, Relation.DEPLOYED_TO, Relation.NEEDS


def need(found: bool, message: str) -> None:
    """A tool the tests need: a failure in CI (bootstrap.sh installs it), a skip elsewhere."""
    if not found:
        if CI:
            pytest.fail(message)
        pytest.skip(message)


def mermaid_parse(text: str) -> str:
    """The diagram type Mermaid's own parser reads in the text (the test fails on a parse error)."""
    node = shutil.which("node")
    need(node is not None and (MERMAID / "node_modules" / "mermaid").is_dir(),
         "Mermaid's parser is not installed: bash bootstrap.sh test (npm ci --prefix .ci/mermaid)")
    assert node is not None
    done = subprocess.run([node, str(MERMAID / "parse.mjs")], input=text, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"Mermaid refuses it: {done.stderr}\n{text}"
    return done.stdout.strip()


def dot_tool() -> str:
    path = shutil.which("dot")
    need(path is not None, "Graphviz's dot not found (apt-get install graphviz; see .ci/apt-core.txt)")
    assert path is not None
    return path


def edges(graph: Graph) -> set[tuple[str, Relation, str]]:
    return {(e.source, e.relation, e.target) for e in graph.edges}


# ----------------------------------------------------------------------------------------------- pure


@pytest.fixture(scope="module")
def example():
    """The example estate as shipped (containers, VMs, Portainer and stacks), less its host parts: what they add is
    test_host_parts_are_what_the_guests_need's, and the README's pictures show them."""
    found = of_estate(load_estate(REPO / "etc", REPO / "images"), "test").resources
    return {k: dataclasses.replace(r, deps=tuple(d for d in r.deps if not d.startswith("host:")))
            for k, r in found.items() if r.kind != "host"}


def decide(resources, changed: dict[str, Decision] | None = None) -> dict[str, Decision]:
    """Every resource up to date but the changed ones."""
    return {k: (changed or {}).get(k) or Decision(k, Action.OK, parent=r.parent) for k, r in resources.items()}


def cloudinit(resources, why: str | None = None) -> dict[str, str | None]:
    return {f"cloudinit:{r.vmid}": why for r in resources.values() if r.kind == "vm"}


VLLM_CHANGED = {"ct920": Decision("ct920", Action.REBUILD, ("feature vllm changed",), Why.INPUTS_CHANGED, parent="ct901")}
VLLM_CHANGED["ct950"] = Decision("ct950", Action.REBUILD, ("parent ct920 rebuilds",), Why.PARENT_BAKES, VLLM_CHANGED["ct920"],
                                 "ct920")


def test_the_example_estate_has_exactly_these_edges(example):
    graph = build(example, decide(example), renders=cloudinit(example))
    assert list(graph.nodes) == ["ct900", "ct901", "ct902", "ct910", "ct920", "ct950", "vm9000", "cloudinit:9000",
                                 "vm9001", "cloudinit:9001", "vm1001", "cloudinit:1001", "vm1002", "cloudinit:1002",
                                 "portainer:server", "portainer:env@910", "portainer:env@1002", "stack:qdrant_service@910",
                                 "stack:thinkheads_ai_app@910", "stack:qdrant_service@1002", "stack:thinkheads_ai_app@1002"]
    assert edges(graph) == {
        ("ct901", C, "ct900"), ("ct902", C, "ct900"), ("ct910", C, "ct902"), ("ct920", C, "ct901"), ("ct950", C, "ct920"),
        ("vm9001", C, "vm9000"), ("vm1001", C, "vm9001"), ("vm1002", C, "vm9001"),
        ("vm9000", N, "cloudinit:9000"), ("vm9001", N, "cloudinit:9001"), ("vm1001", N, "cloudinit:1001"),
        ("vm1002", N, "cloudinit:1002"),
        ("portainer:server", D, "ct910"), ("portainer:env@910", D, "ct910"), ("portainer:env@1002", D, "vm1002"),
        ("portainer:env@910", N, "portainer:server"), ("portainer:env@1002", N, "portainer:server"),
        ("stack:qdrant_service@910", D, "portainer:env@910"), ("stack:thinkheads_ai_app@910", D, "portainer:env@910"),
        ("stack:qdrant_service@1002", D, "portainer:env@1002"), ("stack:thinkheads_ai_app@1002", D, "portainer:env@1002"),
    }
    assert {n.state for n in graph.nodes.values()} == {State.UP_TO_DATE}


def test_host_parts_are_what_the_guests_need(tmp_path: Path):
    root = copy_project(tmp_path / "phoenix")
    path = root / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    data["host"] = {"repos": {"enterprise": False, "no_subscription": True}, "network": {"bridges": []},
                    "storage": {"storages": []}, "nvidia": {}}
    path.write_text(json.dumps(data))
    resources = of_estate(load_estate(root / "etc", root / "images"), "test").resources
    found = {e for e in edges(build(resources, decide(resources))) if e[1] == N}
    guests = ("ct900", "ct901", "ct902", "ct910", "ct920", "ct950")
    gpu = ("ct901", "ct920", "ct950")
    assert found == ({(g, N, "host:storage") for g in guests} | {(g, N, "host:network") for g in guests}
                     | {(g, N, "host:nvidia") for g in gpu} | {("host:nvidia", N, "host:repos")})


def test_a_changed_layer_carries_the_plans_state_and_reason(example):
    graph = build(example, decide(example, VLLM_CHANGED), renders=cloudinit(example))
    assert (graph.nodes["ct920"].state, graph.nodes["ct920"].reason) == (State.REBUILD, "rebuild: feature vllm changed")
    assert (graph.nodes["ct950"].state, graph.nodes["ct950"].reason) == (
        State.REBUILD, "follows (parent ct920 rebuilds): feature vllm changed")
    assert graph.nodes["ct950"].lines == ("ct950 vllmQwen3Coder", "follows (parent ct920 rebuilds): feature vllm changed")
    assert graph.nodes["ct901"].reason == "up to date"


def test_changed_is_what_a_run_changes_and_what_it_hangs_from(example):
    graph = build(example, decide(example, VLLM_CHANGED), renders=cloudinit(example, "not rendered yet"))
    changed = graph.changed()
    # the local cloud-init renders are no change to the host: they come only with a VM that changes
    assert list(changed.nodes) == ["ct900", "ct901", "ct920", "ct950"]
    assert edges(changed) == {("ct901", C, "ct900"), ("ct920", C, "ct901"), ("ct950", C, "ct920")}
    stack = {"stack:qdrant_service@1002": Decision("stack:qdrant_service@1002", Action.BUILD, ("not deployed",),
                                                   Why.NOT_ON_HOST, parent="portainer:env@1002")}
    on_vm = build(example, decide(example, stack), renders=cloudinit(example)).changed()
    # a stack hangs from its environment, its guest's layers (and their cloud-init files), and the server's guest
    assert list(on_vm.nodes) == ["ct900", "ct902", "ct910", "vm9000", "cloudinit:9000", "vm9001", "cloudinit:9001", "vm1002",
                                 "cloudinit:1002", "portainer:server", "portainer:env@1002", "stack:qdrant_service@1002"]
    assert not build(example, decide(example), renders=cloudinit(example, "not rendered yet")).changed().nodes


def test_from_is_the_layer_and_everything_cloned_from_or_deployed_to_it(example):
    graph = build(example, decide(example), renders=cloudinit(example))
    assert list(graph.subtree("ct920").nodes) == ["ct920", "ct950"]
    assert edges(graph.subtree("ct920")) == {("ct950", C, "ct920")}
    assert list(graph.subtree("ct902").nodes) == ["ct902", "ct910", "portainer:server", "portainer:env@910",
                                                  "stack:qdrant_service@910", "stack:thinkheads_ai_app@910"]
    assert list(graph.subtree("vm9001").nodes) == ["vm9001", "vm1001", "vm1002", "portainer:env@1002",
                                                   "stack:qdrant_service@1002", "stack:thinkheads_ai_app@1002"]
    assert list(graph.subtree("ct900").changed().nodes) == []


def test_a_layers_copy_on_another_member_is_drawn_beside_it_with_what_the_run_does_to_it(example):
    copy = Copy("ct200920", "pve2", current=True)
    graph = build(example, decide(example), members=True, copies={"ct920": [copy]})
    node = graph.nodes["ct200920"]
    assert (node.state, node.lines) == (State.UP_TO_DATE, ("ct200920 copy of ct920", "up to date", "on pve2"))
    assert ("ct200920", Relation.COPY_OF, "ct920") in edges(graph)
    assert list(graph.nodes).index("ct200920") == list(graph.nodes).index("ct920") + 1
    assert "ct200920" in graph.subtree("ct920").nodes and not graph.changed().nodes
    # the layer rebakes and its build makes the copy on pve2 again: a rebuild, in --changed with what it hangs from
    rebake = {"ct920": dataclasses.replace(VLLM_CHANGED["ct920"], copies=("pve2",))}
    changed = build(example, decide(example, rebake), members=True, copies={"ct920": [copy]}).changed()
    assert (changed.nodes["ct200920"].state, changed.nodes["ct200920"].reason) == (
        State.REBUILD, "rebuild: made again from ct920's new build")
    assert list(changed.nodes) == ["ct900", "ct901", "ct920", "ct200920"]
    # a copy of an older build that no clone needs now is left as it is, and says so
    stale = build(example, decide(example), members=True, copies={"ct920": [Copy("ct200920", "pve2", current=False)]})
    assert (stale.nodes["ct200920"].state, stale.nodes["ct200920"].reason) == (
        State.UP_TO_DATE, "a copy of another build of ct920 (made again when a clone needs it)")


def test_a_copy_is_valid_mermaid_and_dot(example):
    graph = build(example, decide(example), members=True, copies={"ct920": [Copy("ct200920", "pve2", True)]})
    drawn = mermaid.render(graph)
    assert "  ct200920 --o|copy of| ct920" in drawn.splitlines()
    assert mermaid_parse(drawn) == "flowchart-v2"
    done = subprocess.run([dot_tool(), "-Tsvg"], input=dot.render(graph), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


NASTY = ('q"uote #35; #hash <b>bold</b> &amp; `tick` %%c |pipe| -->arrow ünï 雪 ;semi [x] {y} (z) \\back\\ end',
         "end", "o1", "x1", "stack:x y@1", "stack:x_y@1", "9lives", "graph", "click", "--", "A--oB")


def nasty_graph() -> Graph:
    keys = NASTY[1:]
    nodes = {k: Node(k, kind, role, k if k != "end" else NASTY[0], state, f"{state}: {NASTY[0]}", failed=i % 3 == 0,
                     node="pve#2" if i % 2 else None)
             for i, (k, kind, role, state) in enumerate(zip(keys, ("lxc", "lxc", "vm", "stack", "stack", "host", "portainer",
                                                                   "cloudinit", "vm", "lxc"),
                                                          ("template", "app", "app", "app", "app", "host", "app", "files",
                                                           "template", "app"), list(State) * 2, strict=False))}
    chain = list(nodes)
    return Graph(nodes, tuple(Edge(a, b, list(Relation)[i % 3]) for i, (a, b) in enumerate(zip(chain[1:], chain, strict=False))))


def unescape(label: str) -> str:
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), label)


def test_any_name_is_valid_mermaid_and_reads_back_as_it_was():
    graph = nasty_graph()
    text = mermaid.render(graph)
    assert mermaid_parse(text) == "flowchart-v2"
    labels = dict(re.findall(r'^  (\w+)\W+"(.*)"\W*$', text, re.M))
    ids = mermaid.ids(graph.nodes)
    assert len(set(ids.values())) == len(ids)
    for key, node in graph.nodes.items():
        assert unescape(labels[ids[key]]).split("<br/>") == list(node.lines)
    assert mermaid_parse(mermaid.render(Graph({}), "nothing to change: every resource is up to date")) == "flowchart-v2"


def test_any_name_is_valid_dot_and_dot_draws_the_labels_as_they_were():
    graph = nasty_graph()
    done = subprocess.run([dot_tool(), "-Tsvg"], input=dot.render(graph), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ns = {"s": "http://www.w3.org/2000/svg"}
    drawn = [[t.text for t in g.iter(f"{{{ns['s']}}}text")] for g in ET.fromstring(done.stdout).iter(f"{{{ns['s']}}}g")
             if g.get("class") == "node"]
    assert sorted(drawn) == sorted(list(n.lines) for n in graph.nodes.values())
    edge_labels = [t.text for g in ET.fromstring(done.stdout).iter(f"{{{ns['s']}}}g") if g.get("class") == "edge"
                   for t in g.iter(f"{{{ns['s']}}}text")]
    assert sorted(edge_labels) == sorted(e.relation.value for e in graph.edges)


@pytest.mark.parametrize(("action", "artifact", "state", "reason"), [
    (Action.OK, None, State.UP_TO_DATE, "up to date"),
    (Action.UPDATE, None, State.UPDATE, "update: memory 1024 -> 2048 MB"),
    (Action.REBUILD, None, State.REBUILD, "rebuild: memory 1024 -> 2048 MB"),
    (Action.BUILD, None, State.BUILD, "build: memory 1024 -> 2048 MB"),
    (Action.BUILD, "7bf1c.tar.zst", State.RESTORE, "restore from artifact 7bf1c.tar.zst (memory 1024 -> 2048 MB)"),
    (Action.BLOCKED, None, State.BLOCKED, "blocked: memory 1024 -> 2048 MB"),
])
def test_each_decision_is_drawn_with_its_state_and_the_plans_words(example, action, artifact, state, reason):
    @dataclass
    class Archive:
        archive: str

    reasons = () if action == Action.OK else ("memory 1024 -> 2048 MB",)
    d = Decision("ct910", action, reasons, artifact=Archive(artifact) if artifact else None)
    graph = build(example, {**decide(example), "ct910": d})
    assert (graph.nodes["ct910"].state, graph.nodes["ct910"].reason) == (state, reason)
    assert (reason == "up to date") or d.text == reason  # what `doit plan` prints after the key
    assert f"  class ct910 {state.name.lower()}\n" in mermaid.render(graph.only({"ct910"}))


def test_every_state_and_relation_is_in_the_legend():
    assert set(LEGEND) == {*State, *Relation, "failed last run"}


# ------------------------------------------------------------------------------------ end to end


@dataclass
class Drawn:
    rc: int
    out: str   # stdout: the picture alone
    err: str   # what the run says on the side
    requests: list[tuple[str, str]]
    portainer_requests: int


def graph(co: Checkout, *args: str) -> Drawn:
    """`doit plan --graph ARGS` in-process, stdout and stderr apart, with the requests it made to the host."""
    mark = co.mark()
    out, err = io.StringIO(), io.StringIO()
    config, gen = tasks.setup(co.root, process=False, config_dir=co.root / "etc", images_dir=co.root / "images",
                              cache_dir=co.cache, out=err, sim_options=co.sim_options)
    main = DoitMain(ModuleTaskLoader({"DOIT_CONFIG": {**config, "outfile": out}, "task_resources": gen}),
                    config_filenames=("pyproject.toml",))
    cwd = os.getcwd()
    try:
        os.chdir(co.root)
        with redirect_stdout(out), redirect_stderr(err):
            rc = main.run(["plan", "--graph", *args])
    finally:
        os.chdir(cwd)
    run = current.RUN
    assert run is not None
    run.close()
    return Drawn(rc, out.getvalue(), err.getvalue(), [(m, p) for m, p, _ in co.pve.requests[mark:]],
                 run.portainer_counters.total)


def plan_requests(co: Checkout) -> list[tuple[str, str]]:
    mark = co.mark()
    assert co.doit("plan").rc == 0
    return [(m, p) for m, p, _ in co.pve.requests[mark:]]


def edit_vllm(co: Checkout) -> None:
    script = co.root / "images" / "features" / "vllm.sh"
    script.write_text(script.read_text() + "\n# changed\n")


def test_a_no_op_graph_makes_one_request_and_every_node_is_up_to_date(built: Checkout):
    drawn = graph(built)
    assert drawn.rc == 0, drawn.err
    assert drawn.requests == [LISTING]
    assert mermaid_parse(drawn.out) == "flowchart-v2"
    assert "  class ct900,ct901,ct902,ct910,ct920,ct950 up_to_date\n" in drawn.out
    assert "SIMULATED" in drawn.err and "SIMULATED" not in drawn.out  # what the run says goes to stderr


def test_a_changed_feature_script_rebuilds_ct920_and_its_follower_with_the_plans_reads(built: Checkout):
    edit_vllm(built)
    expected = plan_requests(built)
    drawn = graph(built)
    assert drawn.rc == 0, drawn.err
    # the plan's own reads, and no more: the listing, then ct920's record (what says *which* input changed)
    assert drawn.requests == expected
    assert expected[0] == LISTING and set(expected[1:]) == {("GET", f"{NODE}/lxc/920/config")}
    assert '  ct920("ct920 BaseTemplateVLLM<br/>rebuild: feature vllm changed")\n' in drawn.out
    assert '  ct950["ct950 vllmQwen3Coder<br/>follows (parent ct920 rebuilds): feature vllm changed"]\n' in drawn.out
    assert "  class ct900,ct901,ct902,ct910 up_to_date\n" in drawn.out and "  class ct920,ct950 rebuild\n" in drawn.out
    assert mermaid_parse(drawn.out) == "flowchart-v2"
    changed = graph(built, "--changed")
    assert re.findall(r"^  (\w+)[(\[]", changed.out, re.M) == ["ct900", "ct901", "ct920", "ct950"]
    assert re.findall(r"^  (\w+) -", changed.out, re.M) == ["ct901", "ct920", "ct950"]
    assert changed.requests == expected
    subtree = graph(built, "--from", "920")  # a guest id, as every verb takes it
    assert re.findall(r"^  (\w+)[(\[]", subtree.out, re.M) == ["ct920", "ct950"]
    assert subtree.out.count("-->") == 1


def test_a_task_that_failed_in_the_last_run_is_marked(checkout: Checkout):
    checkout.pve.fail("POST", f"{NODE}/lxc/920/snapshot", error="snapshot_feature_not_available", times=1)
    assert checkout.doit().outcomes()["ct920"] == "failed"
    drawn = graph(checkout, "--changed")
    assert drawn.rc == 0, drawn.err
    assert '  ct920("ct920 BaseTemplateVLLM<br/>rebuild: an earlier bake did not finish<br/>failed last run")\n' in drawn.out
    assert "  class ct920 failed\n" in drawn.out and "classDef failed stroke:#c62828" in drawn.out
    assert '  ct950["ct950 vllmQwen3Coder<br/>build: not on the host"]\n' in drawn.out
    assert re.findall(r"^  (\w+)[(\[]", drawn.out, re.M) == ["ct900", "ct901", "ct920", "ct950"]
    assert mermaid_parse(drawn.out) == "flowchart-v2"
    dotted = graph(checkout, "--format", "dot", "--from", "ct920")
    assert '"ct920" [label="ct920 BaseTemplateVLLM\\nrebuild: an earlier bake did not finish\\nfailed last run"' in dotted.out
    assert 'color="#c62828", penwidth=3' in dotted.out


def test_an_unknown_name_is_one_line_with_a_suggestion_and_reads_nothing(built: Checkout):
    drawn = graph(built, "--from", "ct92")
    assert drawn.rc == 3 and drawn.out == "" and drawn.requests == []
    assert drawn.err.splitlines()[-1] == ("phoenix graph: no guest or task 'ct92' in the estate (see `phoenix status`); "
                                          "did you mean ct920, ct902, ct950?")


def test_the_graphs_options_go_with_graph_alone(built: Checkout):
    mark = built.mark()
    for args in (("plan", "--changed"), ("plan", "--from", "ct920"), ("plan", "--format", "dot"), ("plan", "--graph", "--steps")):
        result = built.doit(*args)
        assert result.rc == 3 and result.output.splitlines()[-1] == (
            "phoenix graph: --format, --changed and --from go with --graph, and --graph draws no steps: "
            "`doit plan --graph [--format mermaid|dot|svg] [--changed] [--from TASK]`"), result.output
    assert built.mark() == mark


def test_svg_without_graphviz_is_one_line_and_exit_2(built: Checkout, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    drawn = graph(built, "--format", "svg")
    assert drawn.rc == 2 and drawn.out == "" and drawn.requests == []
    assert drawn.err.splitlines()[-1] == ("phoenix graph: --format svg needs Graphviz's dot, which is not installed: "
                                          "apt-get install graphviz (or use --format mermaid or --format dot)")


def test_dot_and_svg_of_the_estate(built: Checkout):
    dot_tool()
    edit_vllm(built)
    text = graph(built, "--format", "dot")
    assert text.rc == 0, text.err
    checked = subprocess.run(["dot", "-Tcanon"], input=text.out, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0 and not checked.stderr, checked.stderr
    assert '"ct950" -> "ct920" [label="cloned from", style=solid];' in text.out
    svg = graph(built, "--format", "svg")
    assert svg.rc == 0, svg.err
    titles = [t.text for t in ET.fromstring(svg.out).iter("{http://www.w3.org/2000/svg}title")]
    assert {"ct900", "ct950", "ct950->ct920"} <= set(titles)
    assert svg.requests == text.requests == plan_requests(built)


# ---------------------------------------------------------------------------------------------- README


def readme_section() -> str:
    return (REPO / "README.md").read_text().split("### A picture of the estate\n", 1)[1].split("\n### ", 1)[0]


def readme_graphs() -> list[str]:
    return re.findall(r"^```mermaid\n(.*?)^```$", readme_section(), re.S | re.M)


def phoenix(root: Path, *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    return subprocess.run([sys.executable, "-m", "phoenix", "--project", str(root), *args], capture_output=True,
                          text=True, timeout=300, env={**base, "PYTHONPATH": str(REPO)})


def test_the_readmes_graph_of_the_example_estate_is_what_phoenix_graph_draws_on_a_fresh_host(tmp_path: Path):
    root = copy_project(tmp_path / "phoenix", stacks=True, vms=True, host=True)
    drawn = phoenix(root, "graph")
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout == readme_graphs()[0], "README.md's graph is stale: paste this in:\n" + drawn.stdout
    assert mermaid_parse(drawn.stdout) == "flowchart-v2"
    # what the run says on the side is on stderr: the target, and the notes of a config validated just now
    assert "SIMULATED" in drawn.stderr and "DATABASE_PASS looks like a secret" in drawn.stderr
    again = doit_command(root, "plan", "--graph")  # the model is cached now: doit says no notes on stdout
    assert again.returncode == 0 and again.stdout == drawn.stdout, again.stderr


def test_the_readmes_graph_of_a_changed_feature_is_what_graph_changed_draws(tmp_path: Path):
    with audited(Checkout(tmp_path / "phoenix", stacks=True, vms=True, host=True)) as co:
        assert co.doit().rc == 0
        no_op = graph(co)
        edit_vllm(co)
        drawn = graph(co, "--changed")
    assert drawn.rc == 0, drawn.err
    # VMs, Portainer and stacks too, from one Proxmox listing (and the node's notes, for the example's host parts)
    # and one Portainer listing (GET /api/stacks)
    assert (no_op.requests, no_op.portainer_requests) == ([LISTING, ("GET", "/api2/json/nodes/pve1/config")], 1)
    assert drawn.portainer_requests == 1
    assert drawn.out == readme_graphs()[1], "README.md's --changed graph is stale: paste this in:\n" + drawn.out
    assert mermaid_parse(drawn.out) == "flowchart-v2"


def test_the_readmes_legend_is_the_graphs_own():
    rows = dict(re.findall(r"^\| `([^`]+)` \([^)]*\) \| (.*) \|$", readme_section(), re.M))
    assert rows == LEGEND


def test_phoenix_graph_takes_ids_and_names_and_refuses_an_unknown_one_in_one_line(tmp_path: Path):
    root = copy_project(tmp_path / "phoenix")
    unknown = phoenix(root, "graph", "--from", "ct92")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.splitlines()[-1] == ("phoenix: no guest or task 'ct92' in the estate (see `phoenix status`); "
                                               "did you mean ct920, ct902, ct950?")
    assert not (root / ".cache" / "sim").exists()  # nothing was read: no host was even started
    chain = phoenix(root, "graph", "vllmQwen3Coder", "--format", "dot")  # a guest by name: it and what it hangs from
    assert chain.returncode == 0, chain.stderr
    assert re.findall(r'^  "(\w+)" \[', chain.stdout, re.M) == ["ct900", "ct901", "ct920", "ct950"]
    assert phoenix(root, "grahp").stderr == "phoenix: unknown verb 'grahp'; did you mean 'graph'?\n"
