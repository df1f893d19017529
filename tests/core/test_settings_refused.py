"""Settings refused before any request are bad settings: exit 2 (the README's exit codes), one message with the fix,
nothing sent to the node. The node here is the simulator served over real HTTPS, configured as a real one."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from phoenix.sim.host import SimHost

from .conftest import copy_project, doit_command

HYP = "phoenix_hypervisor_config.json"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHost]:
    host = SimHost(tmp_path_factory.mktemp("node") / "sim")
    host.start()
    yield host
    host.stop()


def remote(root: Path, node: SimHost, **proxmox: object) -> Path:
    ep = node.endpoint
    assert ep is not None
    token = root / "etc" / "token.conf"
    token.write_text(ep.secret() + "\n")
    token.chmod(0o600)
    path = root / "etc" / HYP
    data = json.loads(path.read_text())
    data["proxmox"].update(target="remote", api_url=ep.url, node=ep.node, token_id=ep.token_id, token_file=str(token),
                           **proxmox)
    path.write_text(json.dumps(data))
    return token


def other_ca(root: Path) -> Path:
    """A CA that did not sign the node's certificate: the first certificate of the system's default bundle."""
    bundle = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt").read_text()
    first = bundle[bundle.index("-----BEGIN CERTIFICATE-----"):bundle.index("-----END CERTIFICATE-----") + 25]
    path = root / "etc" / "other-ca.pem"
    path.write_text(first + "\n")
    return path


def test_the_right_settings_reach_the_node(tmp_path: Path, node: SimHost):
    """The rig itself: the same settings with the node's own CA make requests (so the refusals below are real)."""
    root = copy_project(tmp_path / "p")
    remote(root, node, ca_file=str(node.endpoint.verify))  # type: ignore[union-attr]
    before = len(node.pve.requests)
    result = doit_command(root, "plan")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(node.pve.requests) > before


@pytest.mark.parametrize("case", ["wrong CA", "token file 0644", "connection refused"])
def test_settings_refused_before_any_request_exit_2(tmp_path: Path, node: SimHost, case: str):
    root = copy_project(tmp_path / "p")
    if case == "wrong CA":
        remote(root, node, ca_file=str(other_ca(root)))
        expected = "its TLS certificate failed verification"
    elif case == "token file 0644":
        remote(root, node, ca_file=str(node.endpoint.verify)).chmod(0o644)  # type: ignore[union-attr]
        expected = "has mode 0644"
    else:
        remote(root, node, ca_file=str(node.endpoint.verify))  # type: ignore[union-attr]
        path = root / "etc" / HYP
        data = json.loads(path.read_text())
        data["proxmox"]["api_url"] = "https://127.0.0.1:9"
        path.write_text(json.dumps(data))
        expected = "the connection was refused"
    before = len(node.pve.requests)
    result = doit_command(root)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out and expected in out, out
    assert "Nothing on the host was touched" in out and "0 API requests" in out, out
    assert len(node.pve.requests) == before  # nothing reached the node
    assert json.loads((root / ".cache" / "last-run.json").read_text())["tasks"]["ct900"]["outcome"] == "failed"
