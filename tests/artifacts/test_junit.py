"""PHOENIX_JUNIT: the run as JUnit XML, one test case per task, failures with the task's log."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from phoenix.junit import ENV, report
from tests.core.conftest import NODE, Checkout


def test_a_failed_task_carries_its_message_and_log_and_its_children_are_skipped(
        checkout: Checkout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "junit.xml"
    monkeypatch.setenv(ENV, str(path))
    checkout.pve.fail("POST", f"{NODE}/lxc/902/snapshot", 500, "snapshot failed: no space left", times=10)
    result = checkout.doit()
    assert result.rc != 0
    suite = ET.parse(path).getroot()
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"ct900", "ct901", "ct902", "ct910", "ct920", "ct950"}
    failure = cases["ct902"].find("failure")
    assert failure is not None and "no space left" in (failure.text or "")
    assert "docker.sh" in (failure.text or "")  # the task's log: what its script printed
    assert cases["ct910"].find("skipped") is not None
    assert cases["ct900"].find("failure") is None and cases["ct900"].find("skipped") is None
    assert suite.get("failures") == "1" and suite.get("tests") == "6"


def test_the_report_is_well_formed_for_any_text() -> None:
    data = {"target": "sim", "wall_seconds": 1.5, "tasks": {"ct900": {"outcome": "restored", "seconds": 0.2,
                                                                       "identity": "ab"}}}
    text = report(data, {"ct901": "bad <xml> & \"quotes\"\nsecond line"}, ["ct900", "ct901"], lambda k: "log ]]> end")
    suite = ET.fromstring(text.split("?>", 1)[1])
    failure = suite.find("testcase[@name='ct901']/failure")
    assert failure is not None and failure.get("message") == 'bad <xml> & "quotes"' and "log ]]> end" in (failure.text or "")
    assert "restored" in (suite.find("testcase[@name='ct900']/system-out").text or "")  # type: ignore[union-attr]
