"""The listing's GET on the standard library (phoenix.pve.reader), against fakepve over real HTTPS.

It must check what Pve's requests session checks, send the token only to the right certificate, and
leave to Pve (returning None) whatever it cannot answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from phoenix.pve import reader
from phoenix.pve.client import ApiError, Pve
from phoenix.pve.counters import Counters
from phoenix.pve.endpoint import Endpoint
from phoenix.sim.host import SimHost


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHost]:
    host = SimHost(tmp_path_factory.mktemp("reader") / "sim")
    host.start()
    host.pve.add_ct(990, node="pve1", status="running", config={"hostname": "listed", "memory": 512, "tags": "phx-id-abc"})
    yield host
    host.stop()


@pytest.fixture
def ep(sim: SimHost) -> Endpoint:
    e = sim.endpoint
    assert e is not None
    return dataclasses.replace(e, timeout=10, retries=0)


def fingerprint_of(ep: Endpoint) -> str:
    der = ssl.PEM_cert_to_DER_cert(Path(str(ep.verify)).read_text())
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def listed(sim: SimHost, ep: Endpoint, counters: Counters) -> tuple[object, int]:
    """reader.get of the listing, and how many requests reached the server meanwhile."""
    before = len(sim.pve.requests)
    items = reader.get(ep, counters, "cluster/resources", type="vm")
    return items, len(sim.pve.requests) - before


def test_the_listing_is_what_pve_gets(sim: SimHost, ep: Endpoint):
    counters = Counters()
    items, reached = listed(sim, ep, counters)
    assert isinstance(items, list) and reached == 1
    expected = Pve.of(ep).get("cluster/resources", type="vm")
    assert sorted((i["vmid"], i.get("tags")) for i in items) == sorted((i["vmid"], i.get("tags")) for i in expected)
    assert any(i["vmid"] == 990 and i["tags"] == "phx-id-abc" for i in items)
    assert (counters.reads, counters.writes, counters.retries) == (1, 0, 0) and counters.seconds > 0


def test_a_pinned_fingerprint_is_checked_before_the_token_is_sent(sim: SimHost, ep: Endpoint):
    right = dataclasses.replace(ep, verify=True, fingerprint=fingerprint_of(ep))
    counters = Counters()
    items, reached = listed(sim, right, counters)
    assert isinstance(items, list) and reached == 1 and counters.reads == 1

    wrong = dataclasses.replace(right, fingerprint=":".join(["00"] * 32))
    counters = Counters()
    assert listed(sim, wrong, counters) == (None, 0)  # connected, saw another certificate, sent nothing
    assert (counters.reads, counters.retries) == (0, 1)


def test_another_ca_is_refused(sim: SimHost, ep: Endpoint, tmp_path: Path):
    from fakepve.certs import make_cert

    other, _, _ = make_cert(str(tmp_path), "other")
    counters = Counters()
    assert listed(sim, dataclasses.replace(ep, verify=other), counters) == (None, 0)
    assert (counters.reads, counters.retries) == (0, 1)


@pytest.mark.parametrize("verify", [True, False])
def test_without_a_ca_file_or_fingerprint_it_is_left_to_pve(sim: SimHost, ep: Endpoint, verify: bool):
    """The default CAs (requests uses certifi's) or no check at all: Pve decides, with requests' own rules."""
    counters = Counters()
    assert listed(sim, dataclasses.replace(ep, verify=verify), counters) == (None, 0)
    assert (counters.reads, counters.retries) == (0, 0)  # not tried


@pytest.mark.parametrize("variable", reader.PROXY_VARIABLES)
def test_a_proxy_in_the_environment_is_left_to_pve(sim: SimHost, ep: Endpoint, monkeypatch, variable: str):
    monkeypatch.setenv(variable, "http://127.0.0.1:9")
    counters = Counters()
    assert listed(sim, ep, counters) == (None, 0)
    assert counters.retries == 0


def test_a_refusal_is_left_to_pve_which_explains_it(sim: SimHost, ep: Endpoint, tmp_path: Path):
    token = tmp_path / "wrong-token"
    token.write_text("00000000-0000-0000-0000-000000000000\n")
    token.chmod(0o600)
    bad = dataclasses.replace(ep, token_file=token)
    counters = Counters()
    assert listed(sim, bad, counters) == (None, 1)
    assert (counters.reads, counters.retries) == (1, 1)
    with pytest.raises(ApiError) as refused:
        Pve.of(bad, counters).get("cluster/resources", type="vm")
    assert refused.value.status == 401
    assert bad.secret() not in str(refused.value)


def test_a_dropped_connection_is_left_to_pve(sim: SimHost, ep: Endpoint):
    sim.pve.flaky_network(drop_rate=1.0)
    try:
        counters = Counters()
        assert listed(sim, ep, counters)[0] is None
        assert (counters.reads, counters.retries) == (1, 1)
    finally:
        sim.pve.flaky_network()


def test_a_missing_ca_file_is_left_to_pve_which_names_it(sim: SimHost, ep: Endpoint, tmp_path: Path):
    from phoenix.errors import PhoenixError

    missing = dataclasses.replace(ep, verify=str(tmp_path / "no-such-ca.pem"))
    counters = Counters()
    assert listed(sim, missing, counters) == (None, 0)
    with pytest.raises(PhoenixError, match=r"cannot reach Proxmox .*no-such-ca\.pem"):
        Pve.of(missing, counters).get("cluster/resources", type="vm")
