"""`doit info TASK`: doit's info, but a task that does not exist is one line with the closest name (exit 3, as for
any bad doit command line), not doit's KeyError."""

from __future__ import annotations

from typing import Any

from doit.cmd_info import Info as DoitInfo
from doit.exceptions import InvalidCommand

from ..cli.targets import unknown_task


class Info(DoitInfo):
    def _execute(self, pos_args: list[str], hide_status: bool = False) -> Any:
        names = [t.name for t in self.task_list]
        if len(pos_args) == 1 and pos_args[0] not in names:
            raise InvalidCommand(unknown_task(pos_args[0], names))
        return super()._execute(pos_args, hide_status=hide_status)
