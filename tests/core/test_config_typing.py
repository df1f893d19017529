"""The config package type-checks clean (mypy with the pydantic plugin, as configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO


def test_mypy_reports_nothing_for_the_config_package(tmp_path):
    pytest.importorskip("mypy")
    r = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert "error: " in r.stdout or r.returncode == 0, r.stdout + r.stderr  # mypy itself ran
    assert [line for line in r.stdout.splitlines() if line.startswith("phoenix/config/")] == []
