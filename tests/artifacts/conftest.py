"""The artifact tests' shared fixtures: the simulated host's, and a store in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from phoenix.artifacts.store import ENV
from tests.core.conftest import built, checkout  # noqa: F401 - the simulated host's fixtures


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The artifact store of the test (PHOENIX_ARTIFACTS), empty."""
    path = tmp_path / "artifacts"
    monkeypatch.setenv(ENV, str(path))
    return path


def flip_a_byte(archive: Path) -> None:
    """Corrupt an archive in its middle: its sha256 no longer matches its manifest."""
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
