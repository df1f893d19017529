"""Portainer's faults through Phoenix's real client over HTTPS (the stand-in's fault injection, a port where
nothing listens): the bounded retries the README promises, then one message naming the URL and the cause; a
certificate refused at once; a write that went unanswered is never sent twice."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakepve.certs import make_cert

from phoenix.errors import PhoenixError
from phoenix.portainer.client import CONNECT_DELAYS, Portainer
from phoenix.pve.counters import Counters
from phoenix.sim.portainer import FAULTS_FILE, PortainerStandin, Served

from .conftest import COMPOSE, PASSWORD


@pytest.fixture
def served(tmp_path: Path, certs) -> Iterator[Served]:
    with Served(PortainerStandin(tmp_path / "state.json", admin_password=PASSWORD), certs[0], certs[1]) as s:
        yield s


def faults(served: Served, *rules: dict) -> None:
    assert served.standin.state_file is not None
    (served.standin.state_file.parent / FAULTS_FILE).write_text(json.dumps(list(rules)))


def keyed(served: Served, certs, sleeps: list[float], timeout: float = 30) -> Portainer:
    c = Portainer(served.url, verify=str(certs[0]), counters=Counters(), timeout=timeout, sleep=sleeps.append)
    c.key = c.create_key(c.login("admin", PASSWORD), PASSWORD, "test")
    c.counters = Counters()
    return c


def dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_refused_connection_is_tried_four_times_with_backoff_then_one_message(certs) -> None:
    sleeps: list[float] = []
    counters = Counters()
    url = f"https://127.0.0.1:{dead_port()}"
    c = Portainer(url, key="ptr_x", verify=str(certs[0]), counters=counters, sleep=sleeps.append)
    with pytest.raises(PhoenixError) as e:
        c.stacks()
    text = str(e.value)
    assert text.startswith(f"Portainer at {url} is unreachable: Connection refused (GET /api/stacks; 4 tries"), text
    assert "Max retries" not in text and "HTTPSConnectionPool" not in text
    assert sleeps == list(CONNECT_DELAYS) and (counters.reads, counters.retries) == (4, 3)


def test_a_refused_write_is_tried_again_it_never_reached_portainer(certs) -> None:
    sleeps: list[float] = []
    c = Portainer(f"https://127.0.0.1:{dead_port()}", key="ptr_x", verify=str(certs[0]), sleep=sleeps.append)
    with pytest.raises(PhoenixError, match="is unreachable: Connection refused"):
        c.create_stack(1, "web", COMPOSE, [])
    assert sleeps == list(CONNECT_DELAYS)


def test_a_certificate_that_fails_verification_is_final_at_once(served: Served, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other, _, _ = make_cert(str(tmp_path / "other"), name="other")  # a CA that did not sign the server's certificate
    sleeps: list[float] = []
    counters = Counters()
    c = Portainer(served.url, key="ptr_secret", verify=str(other), counters=counters, sleep=sleeps.append)
    with pytest.raises(PhoenixError, match="TLS certificate failed verification") as e:
        c.stacks()
    assert "Nothing was sent" in str(e.value) and sleeps == [] and counters.total == 1
    assert served.standin.requests == []  # the server never saw a request, so never the key
    pinned = Portainer(served.url, key="ptr_secret", verify=True, fingerprint="00" * 32, sleep=sleeps.append)
    with pytest.raises(PhoenixError, match="TLS certificate failed verification"):
        pinned.stacks()
    assert sleeps == [] and served.standin.requests == []


def test_a_slow_read_is_tried_once_more_then_one_message(served: Served, certs) -> None:
    sleeps: list[float] = []
    c = keyed(served, certs, sleeps, timeout=0.3)
    faults(served, {"method": "GET", "path": "^/api/stacks$", "delay": 1.5})
    mark = len(served.standin.requests)
    with pytest.raises(PhoenixError) as e:
        c.stacks()
    assert str(e.value).startswith(f"Portainer at {served.url} did not answer GET /api/stacks within 0.3s (2 tries)")
    assert served.standin.requests[mark:] == [("GET", "/api/stacks")] * 2
    faults(served)
    assert c.stacks() == []  # the fault gone, the same client answers


def test_a_write_that_goes_unanswered_is_not_sent_again(served: Served, certs) -> None:
    sleeps: list[float] = []
    c = keyed(served, certs, sleeps, timeout=0.3)
    local = c.call("POST", "/api/endpoints", form={"Name": "local", "EndpointCreationType": "1", "URL": ""})
    faults(served, {"method": "POST", "path": "^/api/stacks/create", "delay": 1.5, "when": "after"})
    with pytest.raises(PhoenixError) as e:
        c.create_stack(local["Id"], "web", COMPOSE, [])
    assert "Whether Portainer did it is not known" in str(e.value)
    posts = [p for m, p in served.standin.requests if m == "POST" and p.startswith("/api/stacks/create")]
    assert len(posts) == 1 and [s["Name"] for s in served.standin.state["stacks"]] == ["web"]


@pytest.mark.parametrize("status", [401, 409, 500])
def test_an_error_status_is_one_message_with_portainers_words(served: Served, certs, status: int) -> None:
    c = keyed(served, certs, [])
    faults(served, {"method": "GET", "path": "^/api/endpoints$", "status": status, "message": "injected", "times": 1})
    with pytest.raises(PhoenixError) as e:
        c.endpoints()
    assert str(e.value).startswith(f"Portainer refused GET /api/endpoints: HTTP {status} injected")
    assert c.endpoints() == []  # only once


def _deploy_step(compose: str, variables=(("PORT", "80", None),)):
    from phoenix.steps import DeployStack

    return DeployStack("redeploy stack web", 910, "web", compose, tuple(variables), "id-new", "build-new", None, {})


def _deployed_web(served: Served, certs):
    """A Phoenix stack `web` on the local environment, and the run's listing of it."""
    from phoenix.portainer import deploy
    from phoenix.portainer.listing import OK, Listing
    from phoenix.portainer.record import EnvFacts

    c = keyed(served, certs, [])
    local = c.call("POST", "/api/endpoints", form={"Name": "local", "EndpointCreationType": "1", "URL": ""})
    listing = Listing(OK)
    listing.registered(910, EnvFacts("env-id", "env-build", int(local["Id"])))
    deploy.deploy(_deploy_step(COMPOSE), c, listing)
    return c, listing


def test_a_redeploy_with_a_compose_file_compose_would_refuse_sends_nothing(served: Served, certs, monkeypatch) -> None:
    from phoenix.portainer import deploy
    from tests.stacks.conftest import SCHEMA

    monkeypatch.setenv("PHOENIX_COMPOSE_SCHEMA", str(SCHEMA))
    c, listing = _deployed_web(served, certs)
    before = [dict(s) for s in served.standin.state["stacks"]]
    mark = len(served.standin.requests)
    for bad, why in (("services:\n  web:\n    image: nginx\n    ports: 80\n", "compose-spec: services/web/ports"),
                     ("services:\n  web:\n    build: {}\n    image: [1]\n", "compose-spec"),
                     ("services: {}\n", "no services"),
                     ("services:\n  web:\n    image: nginx:${TAG}\n", "${TAG} used without a default or a value"),
                     ("services: [\n", "invalid YAML")):
        with pytest.raises(PhoenixError) as e:
            deploy.deploy(_deploy_step(bad), c, listing)
        assert "nothing was sent (the stack on Portainer is as it was)" in str(e.value) and why in str(e.value), bad
    assert served.standin.requests[mark:] == [] and served.standin.state["stacks"] == before


def test_a_redeploy_whose_secret_cannot_be_read_sends_nothing(served: Served, certs, tmp_path: Path) -> None:
    from phoenix.portainer import deploy

    c, listing = _deployed_web(served, certs)
    before = [dict(s) for s in served.standin.state["stacks"]]
    mark = len(served.standin.requests)
    with pytest.raises(PhoenixError, match=r"missing\.conf"):
        deploy.deploy(_deploy_step(COMPOSE, (("PASS", None, str(tmp_path / "missing.conf")),)), c, listing)
    assert served.standin.requests[mark:] == [] and served.standin.state["stacks"] == before


def test_the_runs_listing_checks_the_pin_before_the_token_is_sent(served: Served, certs, tmp_path: Path) -> None:
    """The no-op's one Portainer request (the standard library's GET) and the client behind it: a pinned certificate
    that is not the server's is refused at once, and the server never sees the token; the right pin lists."""
    import hashlib
    import os

    from phoenix.portainer.listing import OK, read
    from phoenix.portainer.target import PortainerTarget

    token, password = tmp_path / "token.conf", tmp_path / "password.conf"
    token.write_text(keyed(served, certs, []).key + "\n")
    password.write_text("the-admin-password-of-this-test\n")
    os.chmod(token, 0o600)
    os.chmod(password, 0o600)
    mark = len(served.standin.requests)
    wrong = PortainerTarget(served.url, str(token), True, "00:" * 31 + "00", password_file=str(password))
    counters = Counters()
    with pytest.raises(PhoenixError, match="TLS certificate failed verification"):
        read(wrong, counters)
    assert served.standin.requests[mark:] == [] and counters.retries <= 1
    right = PortainerTarget(served.url, str(token), True, ":".join(f"{b:02X}" for b in hashlib.sha256(certs[2]).digest()),
                            password_file=str(password))
    assert read(right, Counters()).state == OK
    assert served.standin.requests[mark:] == [("GET", "/api/stacks")]
