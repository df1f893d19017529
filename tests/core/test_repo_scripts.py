"""The project's own shell entry points pass shellcheck, and CI runs exactly the README's test command."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .conftest import REPO


def test_bootstrap_and_ci_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is missing: bootstrap.sh installs it from .ci/apt-core.txt")
        pytest.skip("shellcheck not installed")
    result = subprocess.run(["shellcheck", "-x", "bootstrap.sh", ".ci/run"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "bash bootstrap.sh test" in readme and "bash bootstrap.sh sim" in readme
    assert "exec bash bootstrap.sh test" in (REPO / ".ci" / "run").read_text()
