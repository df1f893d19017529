"""Every script under images/ is shellcheck-clean (with sourced files followed), and declares what it needs."""

from __future__ import annotations

import re
import subprocess

import pytest

from phoenix.features import Library

from .conftest import IMAGES, REPO, all_scripts

SCRIPTS = all_scripts()


def test_shellcheck_is_installed(shellcheck):
    """In CI a missing shellcheck fails (need_tool), so the lint below can never be skipped silently."""
    out = subprocess.run([shellcheck, "--version"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"version: \d+\.\d+", out)


def test_a_missing_tool_fails_in_ci(monkeypatch):
    from . import conftest
    monkeypatch.setattr(conftest, "CI", True)
    with pytest.raises(pytest.fail.Exception, match="not found"):
        conftest.need_tool("phoenix-no-such-tool")
    monkeypatch.setattr(conftest, "CI", False)
    with pytest.raises(pytest.skip.Exception):
        conftest.need_tool("phoenix-no-such-tool")


def test_the_library_has_scripts():
    names = {p.relative_to(IMAGES).as_posix() for p in SCRIPTS}
    assert {"lib/phoenix-common.sh", "features/base_setup.sh", "features/docker.sh", "features/nvidia.sh",
            "features/vllm.sh", "apps/phoenix_hypervisor_lxc_910.sh", "apps/phoenix_hypervisor_lxc_950.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(IMAGES).as_posix())
def test_shellcheck_clean(shellcheck, script):
    r = subprocess.run([shellcheck, "-x", "--severity=style", str(script.relative_to(REPO))],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(IMAGES).as_posix())
def test_script_conventions(script):
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    if script.parent.name == "lib":
        assert "set -Eeuo pipefail" in text and "shopt -s inherit_errexit" in text
        return
    assert 'source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"' in text   # the lib sets -euo pipefail
    assert text.rstrip().endswith('if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then\n    main "$@"\nfi')
    assert "phx_finish" in text


def test_disabled_checks_are_justified():
    for script in SCRIPTS:
        for line in script.read_text().splitlines():
            if "shellcheck disable=" in line:
                assert "#" in line.split("disable=", 1)[1], f"{script}: {line.strip()} needs a reason"


DECLARED = {
    "features/base_setup.sh": ((), (), (), ()),
    "features/docker.sh": (("nesting", "keyctl"), (), (), ("docker_token",)),
    "features/nvidia.sh": (("gpu",), (), (), ()),
    "features/vllm.sh": (("gpu",), ("nvidia",), (), ()),
    "apps/phoenix_hypervisor_lxc_910.sh": (("nesting", "keyctl"), ("docker",), ("portainer_password",), ("docker_token",)),
    "apps/phoenix_hypervisor_lxc_950.sh": (("gpu", "nesting"), ("vllm",), ("vllm_api_key",), ("hf_token",)),
}


@pytest.mark.parametrize("rel", sorted(DECLARED))
def test_header_declarations(rel):
    lib = Library(IMAGES)
    kind, name = rel.split("/")
    s = lib.feature(name.removesuffix(".sh")) if kind == "features" else lib.app(name)
    assert s.problems == ()
    assert s.summary
    assert (s.requires, s.requires_features, s.secrets, s.optional_secrets) == DECLARED[rel]


@pytest.mark.parametrize("rel", sorted(DECLARED))
def test_secrets_used_are_declared(rel):
    """A script reading a secret declares it, so Phoenix delivers it."""
    text = (IMAGES / rel).read_text()
    used = set(re.findall(r"phx_(?:has_)?secret (\w+)", text))
    if re.search(r"^[^#]*\bphx_docker_(?:pull|login)\b", text, re.M):    # these read docker_token when it is there
        used.add("docker_token")
    declared = set(DECLARED[rel][2]) | set(DECLARED[rel][3])
    assert used == declared
