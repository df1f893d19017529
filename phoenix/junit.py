"""A run as a JUnit XML report (PHOENIX_JUNIT=<file>): one test case per task, a failure with its message and the
task's log, a task that did not run (its parent failed) skipped. Every CI shows this format.

Pure but for reading the task logs; the reporter writes it after last-run.json.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from typing import Any

ENV = "PHOENIX_JUNIT"
LOG_TAIL = 64 * 1024  # the end of a failed task's log, in characters


def report(data: Mapping[str, Any], failures: Mapping[str, str], scope: Iterable[str],
           log: Callable[[str], str | None]) -> str:
    """data: last-run.json's content; failures: task -> its error; scope: the tasks the run was to run."""
    tasks: Mapping[str, Any] = data.get("tasks", {})
    names = list(dict.fromkeys([*scope, *tasks, *failures]))
    suite = ET.Element("testsuite", name="phoenix", tests=str(len(names)), time=f"{data.get('wall_seconds', 0):.3f}",
                       hostname=str(data.get("target", "")))
    failed = skipped = 0
    for name in names:
        task = tasks.get(name, {})
        outcome = task.get("outcome")
        case = ET.SubElement(suite, "testcase", classname=f"phoenix.{data.get('target', 'host')}", name=name,
                             time=f"{task.get('seconds', 0):.3f}")
        if name in failures or outcome in ("failed", "interrupted"):
            failed += 1
            message = failures.get(name, str(outcome))
            node = ET.SubElement(case, "failure", message=message.splitlines()[0] if message else "failed",
                                 type="PhoenixError")
            text = (log(name) or "")[-LOG_TAIL:]
            node.text = message + (f"\n\n--- task log (last {LOG_TAIL // 1024} KiB) ---\n{text}" if text else "")
        elif outcome is None:
            skipped += 1
            ET.SubElement(case, "skipped", message="not run: a task it depends on failed, or the run stopped")
        else:
            ET.SubElement(case, "system-out").text = f"{outcome}" + (f" (identity {task['identity']})"
                                                                     if task.get("identity") else "")
    suite.set("failures", str(failed))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
