"""The environment layer's tests: the compose-spec schema of ../shared checks every Compose file Phoenix reads and the
Portainer stand-in checks every one it is sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakepve.certs import make_cert

from tests.core.conftest import REPO, Checkout

SCHEMA = REPO.parent / "shared" / "schemas" / "compose-spec.json"
PASSWORD = "a-long-admin-password"
COMPOSE = "services:\n  web:\n    image: nginx:1.27\n"


@pytest.fixture(autouse=True)
def compose_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SCHEMA.exists(), f"{SCHEMA} is missing: the tests validate Compose files against it"
    monkeypatch.setenv("PHOENIX_COMPOSE_SCHEMA", str(SCHEMA))


@pytest.fixture
def checkout(tmp_path: Path):
    """The example estate as shipped: its guests choose stacks."""
    co = Checkout(tmp_path / "phoenix", stacks=True)
    yield co
    co.stop_sim()


@pytest.fixture
def deployed(checkout: Checkout) -> Checkout:
    result = checkout.doit()
    assert result.rc == 0, result.output
    return checkout


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A certificate for a Portainer stand-in served on its own (certfile, keyfile, DER)."""
    certfile, keyfile, der = make_cert(str(tmp_path), name="portainer")
    return Path(certfile), Path(keyfile), der
