"""doit reporter: each task as it starts and ends (`[n/N]`, its time and the run's), then Phoenix's run summary and
.cache/last-run.json, also when the run is interrupted (Ctrl-C, SIGTERM)."""

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
from .progress import Progress, scope
from .shield import shielded

SHOWN = ("built", "restored", "updated", "up-to-date", "failed", "interrupted")


def doc_of(task: Any) -> str:
    """The first part of a task's doc (a guest's name); for a host part, what it is."""
    head, _, rest = (task.doc or "").partition(":")
    return rest.split(" (")[0].strip() if head == "host" and rest.strip() else head


def only_failed_tasks(fails: list[Any]) -> bool:
    """Whether the run's failures are failed tasks and the dependants they left unbuilt, nothing else: doit counts
    an unmet dependency (under --continue) as an error, exit 2, which Phoenix keeps for bad config and settings."""
    return any(isinstance(f, TaskFailed) for f in fails) and \
        all(isinstance(f, TaskFailed | UnmetDependency) for f in fails)


class PhoenixReporter(ConsoleReporter):
    progress: Progress | None = None

    def __init__(self, outstream: Any, options: Any) -> None:
        live = current.LIVE
        if live is not None and outstream is live.stream:  # doit bound the terminal before dodo.py wrapped it
            outstream = live
        super().__init__(outstream, options)
        self.fails: list[Any] = []  # every failure and error doit told, reported or not

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        super().initialize(tasks, selected_tasks)
        self.progress = Progress(scope(tasks, list(selected_tasks)))
        if current.RUN is not None:
            current.RUN.set_scope(list(selected_tasks))
        if current.LIVE is not None:
            current.LIVE.follow(self.status)

    def status(self) -> str:
        """The live line's text: how far the run is and what runs now (doitx/live.py)."""
        from .live import status_of
        from .progress import seconds

        p = self._progress()
        return status_of(p.total, p.done(), p.running(), p.elapsed(), seconds)

    def _progress(self) -> Progress:
        if self.progress is None:
            self.progress = Progress(())
        return self.progress

    def execute_task(self, task: Any) -> None:
        if task.actions and task.name[0] != "_":
            self.write(f".  {self._progress().start(task.name, doc_of(task))}\n")

    def skip_uptodate(self, task: Any) -> None:
        if task.name[0] != "_":
            self.write(f"-- {self._progress().skip(task.name)}\n")

    def add_success(self, task: Any) -> None:
        super().add_success(task)
        if task.actions and task.name[0] != "_":
            run = current.RUN
            found = run.outcomes.get(task.name) if run is not None else None
            what = found["outcome"] if found is not None and found["outcome"] != "up-to-date" else "done"
            self.write(f"   {self._progress().end(task.name, what)}\n")

    def add_failure(self, task: Any, fail: Any) -> None:
        self.fails.append(fail)  # every failure and error doit told, reported or not
        super().add_failure(task, fail)
        if task.name[0] != "_":
            self.write(f"   {self._progress().end(task.name, 'FAILED')}\n")

    def complete_run(self) -> None:
        if current.LIVE is not None:
            current.LIVE.close_status()
        super().complete_run()
        self.failed_is_one()
        run = current.RUN
        if run is None:
            return
        running = self._progress().running()
        interrupted = bool(running) or isinstance(sys.exc_info()[1], KeyboardInterrupt)
        for key, took in running.items():  # started and never ended: the run stopped under them
            run.outcomes.note(key, "interrupted", took)
        if interrupted:
            run.outcomes.interrupted = True
            run.stop_tasks()
        with shielded(self.write):
            self.finish(run, running, interrupted)

    def finish(self, run: Any, running: dict[str, float], interrupted: bool) -> None:
        """The lease released, .cache/last-run.json written, the JUnit report and the summary lines."""
        try:
            data = run.finish()
        except OSError as e:
            self.write(f"phoenix: could not write last-run.json: {e}\n")
            return
        junit = os.environ.get(JUNIT)
        if junit:
            self.write_junit(run, data, Path(junit))
        counts = Counter(t["outcome"] for t in data["tasks"].values())
        parts = [f"{counts.get(k, 0)} {k}" for k in SHOWN
                 if k not in ("restored", "interrupted") or counts.get(k)]  # restored: only where a layer was (issue 15)
        if data["tasks"] and counts.get("up-to-date") == len(data["tasks"]) and not self.failures and not interrupted:
            self.write("phoenix: nothing to do, the host matches the config\n")
        if interrupted:
            reached = set(data["tasks"])
            left = [n for n in self._progress().names if n not in reached]
            named = ", ".join(left[:6]) + (f" and {len(left) - 6} more" if len(left) > 6 else "")
            self.write("phoenix: INTERRUPTED" + (f" during {', '.join(sorted(running))}" if running else "")
                       + (f"; not reached: {named}" if left else "") + "\n")
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
