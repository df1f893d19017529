"""A real-node configuration of a cluster: the API's fallback when the configured endpoint is down, and each member's
SSH checked before the first write (fakepve over HTTPS, the real OpenSSH server of tests/transport)."""

from __future__ import annotations

import socket

from phoenix.pve.endpoint import Endpoint
from phoenix.pve.failover import answering, connects

from .conftest import RemoteCheckout


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound and released: nothing takes it meanwhile in a test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_first_member_that_answers_serves_the_run_and_it_is_said():
    ep = Endpoint("https://pve1.lan:8006", "pve1", "root@pam!phoenix",
                  fallbacks=(("https://pve2.lan:8006", None, "pve2"), ("https://pve3.lan:8006", "AB:" * 31 + "CD", "pve3")))
    said: list[str] = []
    up = {"https://pve3.lan:8006"}
    found = answering(ep, said.append, lambda url, _t: url in up)
    assert (found.url, found.fingerprint, found.node) == ("https://pve3.lan:8006", "AB:" * 31 + "CD", "pve1")
    assert said == ["phoenix: the API at https://pve1.lan:8006 does not answer; using pve3's at https://pve3.lan:8006 "
                    "(the cluster's API is the same on every member)"]
    assert answering(ep, said.append, lambda url, _t: True) is ep                       # the configured one answers
    assert answering(ep, said.append, lambda url, _t: False) is ep                      # none: its own request says why
    assert not connects(f"https://127.0.0.1:{closed_port()}", 1)


def test_a_run_goes_on_through_another_member_when_the_configured_api_is_down(remote: RemoteCheckout):
    co = remote
    real = co.hypervisor["proxmox"]["api_url"]
    co.hypervisor["proxmox"]["api_url"] = f"https://127.0.0.1:{closed_port()}"
    co.hypervisor["proxmox"]["nodes"] = [{"name": co.ep.node, "api_url": real, "ssh_host": co.sshd.host,
                                          "ssh_port": co.sshd.port, "gpus": co.hypervisor["nvidia"].pop("gpus")}]
    co.save()
    result = co.doit()
    assert result.rc == 0, result.output
    assert f"using {co.ep.node}'s at {real}" in result.output
    assert result.outcomes() == dict.fromkeys(("ct900", "ct902", "ct910"), "built")


def test_a_member_whose_ssh_fails_stops_the_run_before_any_write(remote: RemoteCheckout):
    co = remote
    co.hypervisor["proxmox"]["nodes"] = [{"name": co.ep.node, "ssh_host": co.sshd.host, "ssh_port": closed_port(),
                                          "gpus": co.hypervisor["nvidia"].pop("gpus")}]
    co.save()
    mark = co.mark()
    result = co.doit()
    assert result.rc == 1 and "Traceback" not in result.output, result.output
    assert "problem(s) found before changing anything" in result.output and "Nothing was changed" in result.output
    assert co.writes(mark) == []
