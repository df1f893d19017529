"""The README's "Pointing it at a real Proxmox host": its config sample is what Phoenix reads, and TLS is checked by
default (verify_tls: false only when written)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from phoenix.config.hypervisor import HypervisorConfig
from phoenix.pve.endpoint import Endpoint

from .conftest import REPO

SECTION = "## Pointing it at a real Proxmox host"


def readme_sample() -> dict:
    """The json block of the section: two members ("proxmox": {...}, "ssh": {...}), as one object."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION):]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block is not None
    return json.loads("{" + block.group(1) + "}")


def hypervisor(**sections: dict) -> HypervisorConfig:
    data = json.loads((REPO / "etc" / "phoenix_hypervisor_config.json").read_text())
    return HypervisorConfig.model_validate({**data, **sections})


def test_the_readme_sample_is_the_whole_change_and_reads_as_it_says():
    sample = readme_sample()
    assert set(sample) == {"proxmox", "ssh"}
    config = hypervisor(**sample)  # the shipped config with these two sections replaced: nothing else changes
    etc = Path("/project/etc")
    ep = Endpoint.of(config, etc)
    assert not ep.simulated and ep.url == "https://pve1.example.lan:8006" and ep.node == "pve1"
    assert ep.token_id == "root@pam!phoenix" and ep.token_file == etc / "phoenix_pve_token.conf"  # beside the config
    assert ep.verify == "/etc/pve/pve-root-ca.pem" and ep.fingerprint is None
    assert (config.ssh.host, config.ssh.user, config.ssh.key_file, config.ssh.known_hosts) == (
        "pve1.example.lan", "root", "~/.ssh/id_ed25519", "~/.ssh/known_hosts")


def test_tls_is_verified_unless_verify_tls_false_is_written():
    proxmox = {k: v for k, v in readme_sample()["proxmox"].items() if k != "ca_file"}
    etc = Path("/project/etc")
    assert Endpoint.of(hypervisor(proxmox=proxmox), etc).verify is True  # no CA file: the system's CAs, never off
    pinned = {**proxmox, "fingerprint": ":".join(["AB"] * 32)}
    assert Endpoint.of(hypervisor(proxmox=pinned), etc).fingerprint == ":".join(["AB"] * 32)
    assert Endpoint.of(hypervisor(proxmox={**proxmox, "verify_tls": False}), etc).verify is False


@pytest.mark.parametrize("fingerprint", ["AB" * 32, "sha256 Fingerprint=" + ":".join(["AB"] * 32)])
def test_a_fingerprint_is_given_as_openssl_prints_its_value(fingerprint: str):
    """`openssl x509 ... -fingerprint -sha256` prints `sha256 Fingerprint=AB:CD:...`: the value after the = is what the
    config takes; anything else is a config error, not a silently unchecked certificate."""
    from pydantic import ValidationError

    proxmox = {**readme_sample()["proxmox"], "fingerprint": fingerprint}
    with pytest.raises(ValidationError, match="fingerprint"):
        hypervisor(proxmox=proxmox)
