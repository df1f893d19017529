"""doit reporter: doit's console output, then Phoenix's run summary and .cache/last-run.json."""

from __future__ import annotations

from collections import Counter
from typing import Any

from doit.reporter import ConsoleReporter

from . import current


class PhoenixReporter(ConsoleReporter):
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
        run = current.RUN
        if run is None:
            return
        try:
            data = run.write_last_run()
        except OSError as e:
            self.write(f"phoenix: could not write last-run.json: {e}\n")
            return
        counts = Counter(t["outcome"] for t in data["tasks"].values())
        parts = [f"{counts.get(k, 0)} {k}" for k in ("built", "restored", "updated", "up-to-date", "failed")
                 if k != "restored" or counts.get(k)]  # restored: only where a layer was (issue 15)
        if data["tasks"] and counts.get("up-to-date") == len(data["tasks"]) and not self.failures:
            self.write("phoenix: nothing to do, the host matches the config\n")
        self.write(f"phoenix: {', '.join(parts)}; {data['api_requests']} API requests; {data['wall_seconds']:.2f}s "
                   f"(target: {data['target']})\n")
