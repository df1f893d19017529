"""A certificate that fails verification is final at once; a host that accepts and never answers is given up on
within the configured timeout (not once per retry)."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phoenix.errors import PhoenixError
from phoenix.pve import reader
from phoenix.pve.client import Pve
from phoenix.pve.counters import Counters
from phoenix.pve.endpoint import Endpoint
from phoenix.sim.host import SimHost


@pytest.fixture
def silent() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield server.getsockname()[1]
    stop.set()
    t.join(2)
    for c in held:
        c.close()
    server.close()


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("secret\n")
    path.chmod(0o600)
    return path


def test_a_host_that_never_answers_is_given_up_on_within_the_timeout(silent: int, token: Path, tmp_path: Path):
    from fakepve.certs import make_cert

    ca = Path(make_cert(str(tmp_path), "ca")[0])
    ep = Endpoint(f"https://127.0.0.1:{silent}", "pve1", "root@pam!phoenix", token, verify=str(ca), timeout=1, retries=4)
    t0 = time.monotonic()
    with pytest.raises(PhoenixError, match=r"did not answer GET /cluster/resources within 1s"):
        reader.get(ep, Counters(), "cluster/resources", type="vm")
    assert time.monotonic() - t0 < 1.8
    t0 = time.monotonic()
    with pytest.raises(PhoenixError, match=r"did not answer GET /version within 1s"):
        Pve.of(ep).get("version")
    assert time.monotonic() - t0 < 1.8  # 4 retries would have taken 5s and more


def test_a_certificate_that_fails_verification_is_final(tmp_path: Path):
    from fakepve.certs import make_cert

    sim = SimHost(tmp_path / "sim")
    ep = sim.start()
    try:
        other = make_cert(str(tmp_path), "other")[0]
        counters = Counters()
        with pytest.raises(PhoenixError, match=r"its TLS certificate failed verification.*This is final"):
            Pve.of(dataclasses.replace(ep, verify=other, retries=4), counters).get("version")
        assert counters.retries == 0
        assert not any(p.endswith("/version") for _, p, _ in sim.pve.requests)
    finally:
        sim.stop()
