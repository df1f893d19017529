"""One decision path: `doit info`, `doit list -s`, `doit plan` and the run agree, staleness carried down the chain.

Each case changes the host or the config as a user would, asks doit's own commands, then runs and checks that
the run did what they said.
"""

from __future__ import annotations

import re

import pytest

from .conftest import Checkout

ALL = ("ct900", "ct901", "ct902", "ct910", "ct920", "ct950")


def statuses(co: Checkout) -> dict[str, str]:
    """`doit list --status`: task -> R (will run) or U (up to date)."""
    out = co.doit("list", "--status").output
    return dict((name, status) for status, name in re.findall(r"^([RUIE]) (ct\d+)\b", out, re.M))


def edit_script(co: Checkout, relative: str) -> None:
    path = co.root / "images" / relative
    path.write_text(path.read_text() + "\n# changed\n")


def remove_guest(co: Checkout, vmid: int) -> None:
    co.pve.ct(vmid).status = "stopped"
    co.pve.cts.remove(co.pve.ct(vmid))


CASES = {
    # what the user did: (the action, the line info says for ct950, what runs)
    "changed parent": (lambda co: edit_script(co, "features/vllm.sh"),
                       "ct950: follows (parent ct920 rebuilds): feature vllm changed", {"ct920", "ct950"}),
    "changed grandparent": (lambda co: edit_script(co, "features/nvidia.sh"),
                            "ct950: follows (parent ct920 rebuilds): ct901 feature nvidia changed", {"ct901", "ct920", "ct950"}),
    "forgotten parent": (lambda co: co.doit("forget", "ct920"),
                         "ct950: follows (parent ct920 rebuilds): forced by doit forget", {"ct920", "ct950"}),
    "hand-deleted parent": (lambda co: remove_guest(co, 920),
                            "ct950: follows (parent ct920 is built): not on the host", {"ct920", "ct950"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_info_list_plan_and_the_run_agree(built: Checkout, case: str):
    change, says, runs = CASES[case]
    change(built)
    info = built.doit("info", "ct950")
    assert info.rc == 1, info.output  # doit info: 1 when the task is not up to date
    assert "status     : run" in info.output
    assert says in info.output, info.output
    assert statuses(built) == {k: ("R" if k in runs else "U") for k in ALL}
    plan = built.doit("plan").output
    assert f"ct950  {says.removeprefix('ct950: ')}" in plan, plan
    result = built.doit()
    assert result.rc == 0, result.output
    assert {k for k, v in result.outcomes().items() if v == "built"} == runs
    assert statuses(built) == dict.fromkeys(ALL, "U")
    assert "status     : up-to-date" in built.doit("info", "ct950").output


def test_list_status_of_an_estate_with_vms_says_up_to_date_for_every_task_once_built(vm_checkout: Checkout):
    """`doit list --status`: R or U for each task, and U for all once built; the cloud-init renders included (each
    its own task with its own doc, not a group that doit always shows as R with the generator's docstring)."""
    assert vm_checkout.doit().rc == 0
    out = vm_checkout.doit("list", "--status", "--all").output
    rows = {name: status for status, name in re.findall(r"^([RUIE]) (\S+)", out, re.M)}
    assert {"ct950", "vm1001", "cloudinit:1001"} <= set(rows), out
    assert set(rows.values()) == {"U"}, out
    assert "Proxmox resources (one task each)" not in out
    assert re.search(r"^U cloudinit:1001 +render and check VM 1001's cloud-init files$", out, re.M), out
