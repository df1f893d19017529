"""The Portainer stand-in's rules, as Portainer's own handlers have them, through Phoenix's real client over HTTPS;
and the client's messages for what a real server answers."""

from __future__ import annotations

import hashlib
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from phoenix.errors import PhoenixError
from phoenix.portainer.client import Portainer, PortainerError
from phoenix.pve.counters import Counters
from phoenix.sim.portainer import PortainerStandin, Served

from .conftest import COMPOSE, PASSWORD, SCHEMA


@pytest.fixture
def served(tmp_path: Path, certs) -> Iterator[Served]:
    standin = PortainerStandin(tmp_path / "state.json", compose_schema=SCHEMA)
    with Served(standin, certs[0], certs[1]) as s:
        yield s


def client(served: Served, certs, key: str | None = None) -> Portainer:
    return Portainer(served.url, key=key, verify=str(certs[0]), counters=Counters())


def api_key(served: Served, certs) -> str:
    c = client(served, certs)
    if not c.admin_exists():
        c.admin_init("admin", PASSWORD)
    return c.create_key(c.login("admin", PASSWORD), PASSWORD, "test")


def test_admin_init_once_with_a_long_enough_password(served: Served, certs) -> None:
    c = client(served, certs)
    assert not c.admin_exists()
    with pytest.raises(PortainerError) as short:
        c.admin_init("admin", "short")
    assert short.value.status == 400 and "Password does not meet the requirements" in str(short.value)
    c.admin_init("admin", PASSWORD)
    assert c.admin_exists()
    with pytest.raises(PortainerError) as again:
        c.admin_init("admin", PASSWORD)
    assert again.value.status == 409


def test_a_wrong_password_says_which_secret_to_check(served: Served, certs) -> None:
    c = client(served, certs)
    c.admin_init("admin", PASSWORD)
    with pytest.raises(PhoenixError, match=r"secrets\.portainer_password_file is not this server's"):
        c.login("admin", "not-the-password")


def test_an_api_key_is_made_with_a_jwt_and_the_password_and_then_authenticates(served: Served, certs) -> None:
    key = api_key(served, certs)
    assert key.startswith("ptr_")
    keyed = client(served, certs, key)
    assert keyed.stacks() == []
    # an API key cannot make another key (Portainer requires a JWT), and a key of nobody is refused
    with pytest.raises(PortainerError) as nokey:
        keyed.call("POST", "/api/users/1/tokens", body={"password": PASSWORD, "description": "x"})
    assert nokey.value.status == 401
    with pytest.raises(PortainerError, match="the next run makes a new one") as bad:
        client(served, certs, "ptr_not-a-key").stacks()
    assert bad.value.status == 401
    # the password is checked when a key is made
    c = client(served, certs)
    with pytest.raises(PortainerError) as wrong:
        c.create_key(c.login("admin", PASSWORD), "wrong-password", "x")
    assert wrong.value.status == 403


def test_stack_names_are_normalised_and_unique_per_environment(served: Served, certs) -> None:
    c = client(served, certs, api_key(served, certs))
    local = c.call("POST", "/api/endpoints", form={"Name": "local", "EndpointCreationType": "1",
                                                   "URL": "unix:///var/run/docker.sock"})
    made = c.create_stack(local["Id"], "My.Stack_1", COMPOSE, [])
    assert made["Name"] == "mystack_1" and made["EndpointId"] == local["Id"]
    with pytest.raises(PortainerError) as twice:
        c.create_stack(local["Id"], "mystack_1", COMPOSE, [])
    assert twice.value.status == 409 and "mystack_1" in str(twice.value)
    with pytest.raises(PortainerError) as nowhere:
        c.create_stack(99, "other", COMPOSE, [])
    assert nowhere.value.status == 404
    with pytest.raises(PortainerError) as wrong_env:
        c.update_stack(made["Id"], 99, COMPOSE, [], False)
    assert wrong_env.value.status == 400


def test_compose_content_is_checked_against_the_compose_spec(served: Served, certs) -> None:
    c = client(served, certs, api_key(served, certs))
    local = c.call("POST", "/api/endpoints", form={"Name": "local", "EndpointCreationType": "1", "URL": ""})
    for bad in ("services: {}\n", "services:\n  web:\n    image: nginx\n    ports: 80\n", "services: [\n"):
        with pytest.raises(PortainerError) as refused:
            c.create_stack(local["Id"], "bad", bad, [])
        assert refused.value.status in (400, 500), bad
    with pytest.raises(PortainerError) as empty:
        c.create_stack(local["Id"], "bad", "", [])
    assert empty.value.status == 400


class _Agent(http.server.BaseHTTPRequestHandler):
    headers_sent = True

    def do_GET(self) -> None:
        self.send_response(204)
        if self.headers_sent:
            self.send_header("Portainer-Agent-Version", "2.33.5")
            self.send_header("Portainer-Agent-Platform", "1")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def agent(certs) -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Agent)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certs[0]), str(certs[1]))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_an_agent_environment_is_created_only_when_the_agent_answers_as_one(served: Served, certs, agent) -> None:
    c = client(served, certs, api_key(served, certs))
    url = f"tcp://127.0.0.1:{agent.server_address[1]}"
    env = c.create_agent_endpoint("qdrant-db", url)
    assert env["Type"] == 2 and env["URL"] == url
    with pytest.raises(PortainerError) as same_name:
        c.create_agent_endpoint("qdrant-db", url)
    assert same_name.value.status == 409
    _Agent.headers_sent = False
    try:
        with pytest.raises(PortainerError, match="does not answer as a Portainer agent"):
            c.create_agent_endpoint("not-an-agent", url)
    finally:
        _Agent.headers_sent = True
    with pytest.raises(PortainerError, match="unable to reach the agent"):
        c.create_agent_endpoint("nobody", "tcp://127.0.0.1:1")


def test_the_certificate_is_verified_and_a_pinned_fingerprint_replaces_the_ca(served: Served, certs) -> None:
    with pytest.raises(PhoenixError, match="TLS certificate failed verification"):
        Portainer(served.url, verify=True).admin_exists()  # the system CAs do not know the stand-in's certificate
    pin = hashlib.sha256(certs[2]).hexdigest()
    assert Portainer(served.url, verify=True, fingerprint=pin).admin_exists() is False
    with pytest.raises(PhoenixError, match="TLS certificate failed verification"):
        Portainer(served.url, verify=True, fingerprint="00" * 32).admin_exists()


def test_every_request_is_counted(served: Served, certs) -> None:
    counters = Counters()
    c = Portainer(served.url, verify=str(certs[0]), counters=counters)
    c.admin_exists()
    c.admin_init("admin", PASSWORD)
    assert (counters.reads, counters.writes) == (1, 1)
