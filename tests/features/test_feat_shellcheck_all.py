"""`shellcheck -o all` (every optional check) on images/, budgeted: no script may gain a warning.

The optional checks that matter under errexit are SC2310 (a function called in a condition runs with errexit off) and
SC2312 (a command substitution whose status is masked); SC2249 asks for a default case. Brace style (SC2250, SC2248)
is not counted. Lower a number when a script improves; a test fails when one goes up."""

from __future__ import annotations

import collections
import re
import subprocess

import pytest

from .conftest import IMAGES, REPO, all_scripts

IGNORED = {"SC2250", "SC2248"}     # "${var}" / quoting style only
BUDGET = {
    "apps/phoenix_hypervisor_lxc_910.sh": {"SC2249": 1, "SC2310": 6, "SC2312": 3},
    "apps/phoenix_hypervisor_lxc_950.sh": {"SC2310": 16, "SC2312": 16},
    "apps/portainer_agent.sh": {"SC2249": 1, "SC2310": 1, "SC2312": 1},
    "features/base_setup.sh": {"SC2310": 11, "SC2312": 3},
    "features/docker.sh": {"SC2249": 1, "SC2310": 15, "SC2312": 9},
    "features/nvidia.sh": {"SC2310": 7, "SC2312": 9},
    "features/vllm.sh": {"SC2310": 2, "SC2312": 3},
    "host/nvidia.sh": {"SC2310": 11, "SC2312": 4},
    "lib/phoenix-common.sh": {"SC2310": 9, "SC2312": 9},
}


def counts(shellcheck: str, rel: str) -> dict[str, int]:
    path = (IMAGES / rel).relative_to(REPO)
    out = subprocess.run([shellcheck, "-x", "-o", "all", "-f", "gcc", str(path)], cwd=REPO, capture_output=True,
                         text=True).stdout
    codes = [m.group(1) for line in out.splitlines() if line.startswith(f"{path}:")
             if (m := re.search(r"\[(SC\d+)\]$", line))]
    return {k: v for k, v in sorted(collections.Counter(codes).items()) if k not in IGNORED}


def test_every_script_has_a_budget():
    assert sorted(p.relative_to(IMAGES).as_posix() for p in all_scripts()) == sorted(BUDGET)


@pytest.mark.parametrize("rel", sorted(BUDGET))
def test_no_new_optional_warnings(shellcheck, rel):
    found = counts(shellcheck, rel)
    over = {code: (n, BUDGET[rel].get(code, 0)) for code, n in found.items() if n > BUDGET[rel].get(code, 0)}
    assert over == {}, f"{rel}: (found, budget) {over}; run shellcheck -x -o all {rel}"
