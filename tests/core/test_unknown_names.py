"""A task, guest or stack that does not exist is one line with the closest names, never a traceback, and changes
nothing: `doit info/forget/plan` exit 3 (a bad doit command line, as `doit ct951`), the `phoenix` verbs exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import REPO, copy_project, doit_command


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("names") / "p", stacks=True)


def phoenix(root: Path, *args: str):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    return subprocess.run([sys.executable, "-m", "phoenix", *args], cwd=root, capture_output=True, text=True,
                          timeout=300, env={**env, "PYTHONPATH": str(REPO)})


def untouched(root: Path) -> None:
    assert not (root / ".cache" / "sim" / "state.json").exists()  # the simulated host was never started
    assert not (root / ".cache" / "forced.json").exists()  # nothing was forced by a typo


@pytest.mark.parametrize("args", [("info", "ct951"), ("forget", "ct951"), ("plan", "ct951")])
def test_doit_with_an_unknown_task(project: Path, args: tuple[str, ...]):
    result = doit_command(project, *args)
    out = result.stdout + result.stderr
    assert result.returncode == 3, out
    assert "Traceback" not in out and "KeyError" not in out, out
    said = [line for line in out.splitlines() if "ct951" in line]
    assert len(said) == 1 and "did you mean ct950" in said[0], out
    untouched(project)


@pytest.mark.parametrize("args, expected", [
    (("create", "ct951"), "did you mean ct950"),
    (("951",), "did you mean 950"),
    (("delete", "951", "--yes"), "did you mean 950"),
    (("create", "vllmQwen3Codr"), "did you mean vllmQwen3Coder"),
    (("sync", "stack", "qdrant_servce", "to", "910"), "did you mean qdrant_service?"),
    (("sync", "stack", "qdrant_service", "to", "911"), "did you mean 910"),
])
def test_phoenix_with_an_unknown_name(project: Path, args: tuple[str, ...], expected: str):
    result = phoenix(project, *args)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out, out
    lines = [line for line in result.stderr.splitlines() if not line.startswith("phoenix: note:")]
    assert len(lines) == 1 and lines[0].startswith("phoenix: no ") and expected in lines[0], out
    untouched(project)
