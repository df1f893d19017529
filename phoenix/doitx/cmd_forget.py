"""`doit forget ct920`: doit's forget, and a forced rebuild of those resources at the next run.

Phoenix decides from the host, not from doit's database, so forgetting doit's state alone would
change nothing. The request is kept in .cache/forced.json until the rebuild is done; the rebuild gives
the resource a new build id, so its children follow.
"""

from __future__ import annotations

from typing import Any

from doit.cmd_forget import Forget as DoitForget
from doit.exceptions import InvalidCommand

from ..cli.targets import unknown_task
from . import current


class Forget(DoitForget):
    doc_purpose = "force a rebuild of these resources (and so their children) at the next run"

    def _execute(self, forget_sub: Any, forget_disable_default: Any, forget_all: Any) -> int:
        names = [t.name for t in self.task_list]
        unknown = [t for t in (self.sel_tasks or []) if t not in names]
        if unknown and not forget_all:  # before doit forgets anything: nothing is forced for a typo
            raise InvalidCommand(unknown_task(unknown[0], names))
        super()._execute(forget_sub, forget_disable_default, forget_all)
        run = current.current()
        if forget_all:
            names = list(run.resources)
        elif self.sel_default_tasks and forget_disable_default:
            return 0
        else:
            names = list(self.sel_tasks or [])
        keys = sorted(k for k in names if k in run.resources)
        if keys:
            run.forced.add(keys)
            them = "them" if len(keys) > 1 else "it"
            self.outstream.write(f"phoenix: {', '.join(keys)} will be rebuilt at the next run, with everything built "
                                 f"on {them}\n")
        return 0
