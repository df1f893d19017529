"""The PVE client takes its proxy from the environment as requests would (https_proxy, no_proxy), read once when the
client is made rather than on each request."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from phoenix.errors import PhoenixError
from phoenix.pve.client import Pve

PROXY_VARS = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY",
              "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture
def proxy() -> Iterator[tuple[int, list[bytes]]]:
    """A 'proxy' on 127.0.0.1 that records the first line of each request it is sent and closes the connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    seen.append(conn.recv(4096).split(b"\r\n", 1)[0])

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield server.getsockname()[1], seen
    stop.set()
    t.join(2)
    server.close()


def client(port: int) -> Pve:
    return Pve(f"https://127.0.0.1:{port}", "pve1", "root@pam!phoenix", "secret", verify=True, timeout=2, retries=0)


def test_https_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch, proxy: tuple[int, list[bytes]]):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    port, seen = proxy
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    pve = client(8006)
    monkeypatch.delenv("https_proxy")   # read when the client was made: a later change is not looked at
    with pytest.raises(PhoenixError):
        pve.get("version")
    assert seen and seen[0].startswith(b"CONNECT 127.0.0.1:8006 HTTP/"), seen


def test_no_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch, proxy: tuple[int, list[bytes]]):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    port, seen = proxy
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with pytest.raises(PhoenixError):
        client(1).get("version")     # straight to the (closed) port, not through the proxy
    assert seen == []


def test_a_ca_bundle_named_in_the_environment_is_what_verify_true_means(monkeypatch: pytest.MonkeyPatch, tmp_path):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    assert client(8006).api._backend.auth.verify_ssl == str(bundle)   # what proxmoxer passes as verify=
