"""Docker in an unprivileged container needs a node whose lxc-pve has the runc 1.3.3 fix (6.0.5-2): prepare reads
the node's lxc-pve version with its other facts and refuses the build before anything is written."""

from __future__ import annotations

import pytest

from phoenix.facts.node import debian_version_key, lxc_pve_docker_problem, parse_node_facts
from phoenix.transport import simulated

from .conftest import Checkout


@pytest.mark.parametrize(("version", "ok"), [
    ("6.0.5-2", True), ("6.0.5-3", True), ("6.0.10-1", True), ("7.0.0-1", True), ("1:6.0.0-1", True),
    ("6.0.5-1", False), ("6.0.0-1", False), ("5.0.2-4", False),
])
def test_lxc_pve_versions(version, ok):
    assert (lxc_pve_docker_problem(version) is None) == ok


def test_the_message_names_the_package_and_version():
    problem = lxc_pve_docker_problem("6.0.0-1")
    assert problem is not None
    assert "lxc-pve 6.0.0-1" in problem and "lxc-pve 6.0.5-2 or newer" in problem and "apt-get install lxc-pve" in problem
    assert "could not be read" in (lxc_pve_docker_problem(None) or "")
    assert debian_version_key("6.0.10-1") > debian_version_key("6.0.9-9")


def test_the_version_is_read_with_the_node_facts():
    facts = parse_node_facts("--- nvidia-smi\n--- proc\n--- devices\n/dev/nvidiactl\n--- lxc-pve\n6.0.5-2\n")
    assert facts.lxc_pve_version == "6.0.5-2" and facts.nvidia_devices == ("/dev/nvidiactl",)
    assert parse_node_facts("--- lxc-pve\n\n").lxc_pve_version is None


def test_an_old_lxc_pve_stops_the_docker_layer_before_any_write(checkout: Checkout, monkeypatch):
    monkeypatch.setattr(simulated, "SIMULATED_LXC_PVE", "6.0.0-1")
    first = checkout.doit("ct900")
    assert first.rc == 0, first.output
    mark = checkout.mark()
    result = checkout.doit("ct902")
    assert result.rc != 0
    assert "docker: the node has lxc-pve 6.0.0-1; Docker in an unprivileged container needs lxc-pve 6.0.5-2" in result.output
    assert "Traceback" not in result.output
    assert [w for w in checkout.writes(mark) if "/lxc/902" in w[1] or w[1].endswith("/clone")] == []


def test_a_current_lxc_pve_builds_the_docker_layer(checkout: Checkout):
    assert simulated.SIMULATED_LXC_PVE == "6.0.5-3"
    result = checkout.doit("ct902")
    assert result.rc == 0, result.output
