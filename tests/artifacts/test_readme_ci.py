"""The README's CI snippets are valid YAML that caches .cache/, uses the artifact store and publishes the reports."""

from __future__ import annotations

import re

import yaml

from tests.core.conftest import REPO


def snippets() -> list[dict]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Layer archives and CI", 1)[1].split("\n## ", 1)[0]
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", section, re.S)]


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
