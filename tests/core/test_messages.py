"""Expected failures reach the user as doit's TaskFailed with Phoenix's one message, never as a traceback."""

from __future__ import annotations

from .conftest import NODE, Checkout


def assert_one_message(output: str, task: str) -> None:
    assert "Traceback" not in output, output
    assert "PythonAction Error" not in output and "TaskError" not in output, output
    assert f"TaskFailed - taskid:{task}" in output, output
    assert "phoenix: " in output.splitlines()[-1]  # the run's summary line still ends the output


def test_a_protected_guest_is_a_message(built: Checkout):
    built.ct(950).config["protection"] = 1
    script = built.root / "images" / "apps" / "phoenix_hypervisor_lxc_950.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    result = built.doit()
    assert result.rc == 1
    assert_one_message(result.output, "ct950")
    assert "CT 950 has protection set" in result.output
    assert "Nothing was changed on the host." in result.output  # and it says what this run had already rebuilt


def test_a_locked_guest_is_a_message(built: Checkout):
    built.ct(950).config["lock"] = "backup"
    built.edit_guest(950, memory_mb=49152)
    result = built.doit()
    assert result.rc == 1
    assert_one_message(result.output, "ct950")
    assert "CT 950 is locked (backup) but no task is running" in result.output
    assert "python -m phoenix.sim unlock 950" in result.output  # the simulated host's own `pct unlock`


def test_a_refused_token_is_a_message(built: Checkout):
    token = built.cache / "sim" / "token"
    token.write_text("00000000-0000-0000-0000-000000000000\n")
    result = built.doit()
    assert result.rc == 1
    assert_one_message(result.output, "ct900")
    assert "Proxmox refused GET /cluster/resources: HTTP 401" in result.output
    assert "00000000-0000" not in result.output


def test_a_failed_proxmox_task_is_a_message_with_its_log(checkout: Checkout):
    checkout.pve.fail("POST", f"{NODE}/lxc/900/snapshot", error="snapshot_feature_not_available", times=1)
    result = checkout.doit()
    assert result.rc == 1
    assert_one_message(result.output, "ct900")
    assert "task log" in result.output
