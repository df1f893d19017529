"""Config fields that reach the feature scripts through the build context: nvidia.installer_sha256, the docker section
(source, login_user). Each case (a config edit) is data: the context the scripts get, and what the script reads."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from phoenix.config.estate import load_estate
from phoenix.facts.node import NodeFacts
from phoenix.kinds.lxc.context import build_context
from phoenix.kinds.lxc.resources import resources

from .conftest import REPO

SHA = "ab" * 32
HOST_SHA = "cd" * 32


def estate_with(tmp_path: Path, lxc: Callable[[dict[str, Any]], object] = lambda c: None,
                hyp: Callable[[dict[str, Any]], object] = lambda h: None) -> Any:
    etc = tmp_path / "etc"
    shutil.copytree(REPO / "etc", etc)
    for name, fn in (("phoenix_lxc_configs.json", lambda d: lxc(d["lxc_configs"])), ("phoenix_hypervisor_config.json", hyp)):
        data = json.loads((etc / name).read_text())
        fn(data)
        (etc / name).write_text(json.dumps(data))
    return load_estate(etc, REPO / "images")


def set_sha(h: dict[str, Any], sha: str | None = SHA, host: str | None = None) -> None:
    if sha:
        h["nvidia"]["installer_sha256"] = sha
    if host:
        h.setdefault("host", {})["nvidia"] = {"installer_sha256": host}


# (what, lxc edit, hypervisor edit, ctid, node's driver (None: the configured one), the context's part expected)
CASES = [
    ("defaults", None, None, 902, None,
     {"docker": {"source": "distro", "login_user": None}, "nvidia": {"installer_sha256": None}}),
    ("docker's own repository", lambda c: c["902"].update(docker={"source": "docker"}), None, 902, None,
     {"docker": {"source": "docker", "login_user": None}}),
    ("a clone uses the section of the layer that installed Docker",
     lambda c: c["902"].update(docker={"source": "docker", "login_user": "phoenixops"}), None, 910, None,
     {"docker": {"source": "docker", "login_user": "phoenixops"}}),
    ("a clone's own section wins", lambda c: (c["902"].update(docker={"source": "docker", "login_user": "a"}),
                                              c["910"].update(docker={"login_user": "b"})), None, 910, None,
     {"docker": {"source": "distro", "login_user": "b"}}),
    ("the installer's checksum", None, set_sha, 901, None, {"nvidia": {"installer_sha256": SHA}}),
    ("host.nvidia's checksum when nvidia has none", None, lambda h: set_sha(h, None, HOST_SHA), 901, None,
     {"nvidia": {"installer_sha256": HOST_SHA}}),
    ("nvidia's own checksum first", None, lambda h: set_sha(h, SHA, HOST_SHA), 901, None,
     {"nvidia": {"installer_sha256": SHA}}),
    ("no checksum when the node runs another driver than the configured one", None, set_sha, 901, "550.54.14",
     {"nvidia": {"driver_version": "550.54.14", "installer_sha256": None}}),
]


@pytest.mark.parametrize(("what", "lxc", "hyp", "ctid", "driver", "expected"), CASES, ids=[c[0] for c in CASES])
def test_context_carries_the_config(tmp_path, what, lxc, hyp, ctid, driver, expected):
    estate = estate_with(tmp_path, lxc or (lambda c: None), hyp or (lambda h: None))
    context = build_context(estate, ctid, NodeFacts(nvidia_driver_version=driver))
    for part, values in expected.items():
        assert {k: context[part][k] for k in values} == values, what
    assert set(context["docker"]) == {"user", "nvidia_toolkit", "source", "login_user"}   # no secret value in it


def test_the_scripts_read_what_the_context_gives(tmp_path, shell):
    estate = estate_with(tmp_path, lambda c: c["902"].update(docker={"source": "docker", "login_user": "phoenixops"}),
                         set_sha)
    r = shell.run("features/docker.sh", 'echo "$(phx_ctx docker_source distro) $(phx_ctx docker_login_user)"',
                  context=build_context(estate, 902))
    assert r.stdout.split() == ["docker", "phoenixops"]
    r = shell.run("features/nvidia.sh", 'phx_ctx nvidia_installer_sha256', context=build_context(estate, 901))
    assert r.stdout.strip() == SHA


def test_the_login_user_pairs_with_a_bare_token_secret(tmp_path, shell):
    """The password stays the docker_token secret file; the config gives only the user it belongs to."""
    estate = estate_with(tmp_path, lambda c: c["902"].update(docker={"login_user": "phoenixops"}))
    shell.secret("docker_token", "dckr_pat_secret")
    r = shell.run("lib/phoenix-common.sh",
                  'phx_docker_login_user "$(phx_secret docker_token)" "$(phx_ctx docker_login_user)"',
                  context=build_context(estate, 910))
    assert r.stdout.strip() == "phoenixops"


def identities(estate: Any) -> dict[int, dict[str, str]]:
    return {r.vmid: r.inputs for r in resources(estate).values()}


def test_docker_source_is_part_of_the_docker_layers_identity(tmp_path):
    before = identities(estate_with(tmp_path / "a"))
    after = identities(estate_with(tmp_path / "b", lambda c: c["902"].update(docker={"source": "docker"})))
    assert [c for c in before if before[c] != after[c]] == [902]   # its clones follow through the parent's build
    user = identities(estate_with(tmp_path / "c", lambda c: c["902"].update(docker={"login_user": "phoenixops"})))
    assert user == before   # who logs in is not baked into the layer
