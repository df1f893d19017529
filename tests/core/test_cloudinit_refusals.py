"""Cloud-init templates that fail to render or validate are refused with the config (exit 2, before any request),
naming the template and its line; one that fails during a run counts as failed in the summary and last-run.json, and
a failed task that leaves its dependants unbuilt under --continue exits 1 (doit's own code for that is 2, which
Phoenix keeps for bad config and settings)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from doit.exceptions import TaskError, TaskFailed, UnmetDependency

from phoenix.doitx.reporter import only_failed_tasks

from .conftest import Checkout, copy_project, doit_command
from .test_config_refusals import PYDANTIC


def unknown_key(root: Path) -> tuple[Path, str]:
    path = root / "cloudinit" / "user-data.yml.j2"
    lines = path.read_text().splitlines()
    lines.insert(4, "no_such_key: 1")
    path.write_text("\n".join(lines) + "\n")
    return path, ("line 5: unknown top-level key 'no_such_key': cloud-init's cloud-config schema (v1) has no such key; "
                  "fix its name or remove it (rendered for VMs 1001, 1002, 9000, 9001)")


def bad_override(root: Path) -> tuple[Path, str]:
    path = root / "cloudinit" / "1001" / "user-data.yml.j2"
    path.parent.mkdir()
    path.write_text("#cloud-config\nhostname: {{ hostname | tojson }}\npackages: [a, b\n")
    return path, "line 3: invalid YAML: expected ',' or ']', but got '<stream end>' (rendered for VM 1001)"


def no_instance_id(root: Path) -> tuple[Path, str]:
    path = root / "cloudinit" / "meta-data.yml.j2"
    path.write_text("local-hostname: {{ hostname | tojson }}\n")
    return path, ("instance-id: meta-data needs an instance-id (a string): add the line instance-id: "
                  "{{ instance_id | tojson }} (Phoenix gives each build its own) (rendered for VMs 1001, 1002, 9000, "
                  "9001)")


def wrong_type(root: Path) -> tuple[Path, str]:
    path = root / "cloudinit" / "user-data.yml.j2"
    path.write_text(path.read_text().replace("runcmd:\n", "runcmd: 5\nbootcmd:\n"))
    line = path.read_text().splitlines().index("runcmd: 5") + 1
    return path, f"line {line} (runcmd): 5 is not of type 'array' (rendered for VMs"


@pytest.mark.parametrize("case", [unknown_key, bad_override, no_instance_id, wrong_type], ids=lambda c: c.__name__)
def test_a_bad_template_is_exit_2_before_any_request_naming_the_template_and_line(
        tmp_path: Path, case: Callable[[Path], tuple[Path, str]]):
    root = copy_project(tmp_path / "p", vms=True)
    template, said = case(root)
    result = doit_command(root)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out and "TaskFailed" not in out and not any(w in out for w in PYDANTIC), out
    assert "1 problem(s) in the configuration (nothing on the host was touched)" in out, out
    assert f"{template}: {said}" in out, out
    assert not (root / ".cache" / "sim" / "state.json").exists()  # the simulated host was never started
    assert not (root / ".cache" / "last-run.json").exists()       # no run began


def test_a_render_that_fails_during_the_run_counts_as_failed_and_only_its_vm_waits(tmp_path: Path):
    co = Checkout(tmp_path / "phoenix", vms=True)
    try:
        (co.cache / "cloudinit").mkdir(parents=True)
        (co.cache / "cloudinit" / "1001").write_text("in the way\n")  # the task cannot make its directory
        result = co.doit("--continue")
        out = result.output
        assert result.rc == 1, out  # a task failed: not 2 (bad config), though vm1001 is left unbuilt
        assert "Traceback" not in out
        assert (f"cloudinit:1001: cannot write VM 1001's cloud-init files under {co.cache / 'cloudinit' / '1001'}: "
                "File exists") in out, out
        outcomes = result.outcomes()
        assert outcomes["cloudinit:1001"] == "failed" and "vm1001" not in outcomes, outcomes
        assert outcomes["vm1002"] == outcomes["ct950"] == "built", outcomes
        assert "1 failed;" in out, out
        vms = {v.vmid for v in co.pve.vms}
        assert 1001 not in vms and 1002 in vms   # what waits on it was not built; the rest was
    finally:
        co.stop_sim()


def test_a_failed_parent_under_continue_exits_1_and_its_children_wait(tmp_path: Path):
    co = Checkout(tmp_path / "phoenix")
    try:
        co.pve.add_ct(920, "handmade", config={"tags": "mine"})
        result = co.doit("--continue")
        assert result.rc == 1, result.output
        assert "UnmetDependency - taskid:ct950" in result.output  # 950 waits for the 920 it is cloned from
        assert result.outcomes()["ct920"] == "failed" and result.outcomes()["ct910"] == "built"
        assert co.pve.ct(920).config["hostname"] == "handmade" and 950 not in {c.vmid for c in co.pve.cts}
    finally:
        co.stop_sim()


def test_only_failed_tasks_and_their_waiting_dependants_are_exit_1():
    assert only_failed_tasks([TaskFailed("x"), UnmetDependency("ct920")])
    assert not only_failed_tasks([UnmetDependency("ct920")])             # nothing failed: doit's own error
    assert not only_failed_tasks([TaskFailed("x"), TaskError("settings")])  # a refused setting stays 2
