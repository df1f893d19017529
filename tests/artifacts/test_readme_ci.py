"""The README's CI snippets are valid YAML that caches .cache/, uses the artifact store and publishes the reports."""

from __future__ import annotations

import re

import yaml

from tests.core.conftest import REPO

# the graph of the run, before it: in GitHub's job summary (Mermaid in its fences), in GitLab as an exposed SVG artifact
GITHUB_GRAPH = "{ echo '```mermaid'; .venv/bin/phoenix graph --changed; echo '```'; } >> \"$GITHUB_STEP_SUMMARY\""
GITLAB_GRAPH = ".venv/bin/phoenix graph --changed --format svg > phoenix-graph.svg"


def snippets() -> list[dict]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Layer archives and CI", 1)[1].split("\n## ", 1)[0]
    return [yaml.safe_load(block) for block in re.findall(r"^```yaml\n(.*?)^```$", section, re.S | re.M)]


def test_the_github_and_gitlab_snippets_cache_the_cache_and_use_the_store() -> None:
    github, gitlab = snippets()
    job = github["jobs"]["estate"]
    assert job["env"]["PHOENIX_ARTIFACTS"] and job["env"]["PHOENIX_JUNIT"]
    steps = job["steps"]
    assert any(s.get("uses", "").startswith("actions/cache") and s["with"]["path"] == ".cache" for s in steps)
    assert [s["run"] for s in steps if s.get("run", "").startswith(".venv/bin/doit")] == [
        ".venv/bin/doit plan", ".venv/bin/doit", ".venv/bin/doit export"]
    assert any(".cache/last-run.json" in str(s.get("with", {}).get("path", "")) for s in steps)
    est = gitlab["estate"]
    assert est["cache"]["paths"] == [".cache/"] and est["variables"]["PHOENIX_ARTIFACTS"]
    assert est["artifacts"]["reports"]["junit"] == est["variables"]["PHOENIX_JUNIT"]
    assert ".cache/last-run.json" in est["artifacts"]["paths"]


def test_both_snippets_run_the_same_commands_and_publish_the_junit_report_they_ask_for() -> None:
    """The commands are the README's own (a venv with the project, plan, run, export); the report each publishes is the
    file PHOENIX_JUNIT names, and the run's summary is kept even when a step fails."""
    github, gitlab = snippets()
    install = "python3 -m venv .venv && .venv/bin/pip install -e ."
    job = github["jobs"]["estate"]
    runs = [s["run"].split("#")[0].strip() for s in job["steps"] if "run" in s]
    assert runs == [install, ".venv/bin/doit plan", GITHUB_GRAPH, ".venv/bin/doit", ".venv/bin/doit export"]
    junit = job["env"]["PHOENIX_JUNIT"]
    uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert len(uploads) == 1 and uploads[0]["if"] == "always()"
    assert uploads[0]["with"]["path"].split() == [".cache/last-run.json", junit]
    (report,) = [s for s in job["steps"] if "action-junit-report" in s.get("uses", "")]
    assert report["if"] == "always()" and report["with"]["report_paths"] == junit
    est = gitlab["estate"]
    assert est["script"] == [install, ".venv/bin/doit plan", GITLAB_GRAPH, ".venv/bin/doit", ".venv/bin/doit export"]
    assert est["artifacts"]["when"] == "always"
    assert job["env"]["PHOENIX_ARTIFACTS"] == est["variables"]["PHOENIX_ARTIFACTS"]


def test_the_graph_of_the_run_is_in_githubs_job_summary_and_gitlabs_merge_request() -> None:
    """Before the run, so it shows what the run is about to change: GitHub gets the Mermaid in ```mermaid fences in the
    job summary, GitLab the SVG as an artifact the merge request links to."""
    github, gitlab = snippets()
    steps = github["jobs"]["estate"]["steps"]
    runs = [s.get("run", "").strip() for s in steps]
    assert runs.index(GITHUB_GRAPH) == runs.index(".venv/bin/doit plan") + 1 == runs.index(".venv/bin/doit") - 1
    est = gitlab["estate"]
    assert est["script"].index(GITLAB_GRAPH) == est["script"].index(".venv/bin/doit") - 1
    assert "phoenix-graph.svg" in est["artifacts"]["paths"] and est["artifacts"]["expose_as"]
