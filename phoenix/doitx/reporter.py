"""doit reporter: doit's console output, then Phoenix's run summary and .cache/last-run.json."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from doit.exceptions import TaskFailed, UnmetDependency
from doit.reporter import ConsoleReporter
from doit.runner import FAILURE, Runner

from ..junit import ENV as JUNIT
from . import current


def only_failed_tasks(fails: list[Any]) -> bool:
    """Whether the run's failures are failed tasks and the dependants they left unbuilt, nothing else: doit counts
    an unmet dependency (under --continue) as an error, exit 2, which Phoenix keeps for bad config and settings."""
    return any(isinstance(f, TaskFailed) for f in fails) and \
        all(isinstance(f, TaskFailed | UnmetDependency) for f in fails)


class PhoenixReporter(ConsoleReporter):
    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)
        self.fails: list[Any] = []  # every failure and error doit told, reported or not

    def add_failure(self, task: Any, fail: Any) -> None:
        self.fails.append(fail)
        super().add_failure(task, fail)

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        super().initialize(tasks, selected_tasks)
        if current.RUN is not None:
            current.RUN.set_scope(list(selected_tasks))

    def execute_task(self, task: Any) -> None:
        if task.actions and task.name[0] != "_":
            self.write(f".  {task.name}: {task.doc.split(':')[0] if task.doc else ''}\n")

    def skip_uptodate(self, task: Any) -> None:
        if task.name[0] != "_":
            self.write(f"-- {task.name}: up to date\n")

    def complete_run(self) -> None:
        super().complete_run()
        self.failed_is_one()
        run = current.RUN
        if run is None:
            return
        try:
            data = run.write_last_run()
        except OSError as e:
            self.write(f"phoenix: could not write last-run.json: {e}\n")
            return
        junit = os.environ.get(JUNIT)
        if junit:
            self.write_junit(run, data, Path(junit))
        counts = Counter(t["outcome"] for t in data["tasks"].values())
        parts = [f"{counts.get(k, 0)} {k}" for k in ("built", "restored", "updated", "up-to-date", "failed")
                 if k != "restored" or counts.get(k)]  # restored: only where a layer was (issue 15)
        if data["tasks"] and counts.get("up-to-date") == len(data["tasks"]) and not self.failures:
            self.write("phoenix: nothing to do, the host matches the config\n")
        self.write(f"phoenix: {', '.join(parts)}; {data['api_requests']} API requests; {data['wall_seconds']:.2f}s "
                   f"(target: {data['target']})\n")

    def failed_is_one(self) -> None:
        """Exit 1, not 2, when tasks failed and left their dependants unbuilt. doit's runner calls complete_run from
        its finish() and returns its final_result right after: that runner is the caller's frame."""
        if self.runtime_errors or not only_failed_tasks(self.fails):
            return
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            runner = frame.f_locals.get("self")
            if isinstance(runner, Runner):
                runner.final_result = FAILURE
                return
            frame = frame.f_back

    def write_junit(self, run: Any, data: dict[str, Any], path: Path) -> None:
        """The run as JUnit XML (PHOENIX_JUNIT): one test case per task, failures with the task's log."""
        from ..cachefiles import write_whole
        from ..junit import report

        failures = {f["task"].name: f["exception"].get_msg().strip() for f in self.failures}

        def log(key: str) -> str | None:
            found = run.cache / "logs" / f"{key}.log"
            return found.read_text(errors="replace") if found.exists() else None

        scope = [k for k in run.resources if not run.scope or k in run.scope]
        try:
            write_whole(path, report(data, failures, scope, log).encode())
        except OSError as e:
            self.write(f"phoenix: could not write the JUnit report {path}: {e.strerror}\n")
