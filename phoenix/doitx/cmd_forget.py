"""`doit forget ct920`: doit's forget, and a forced rebake of those layers at the next run.

Phoenix decides from the host, not from doit's database, so forgetting doit's state alone would
change nothing. The request is kept in .cache/forced.json until the rebake is done; the rebake gives
the layer a new build id, so its children follow.
"""

from __future__ import annotations

from doit.cmd_forget import Forget as DoitForget

from ..layers import task_ctid


class Forget(DoitForget):
    doc_purpose = "force a rebake of these layers (and so their children) at the next run"

    def _execute(self, forget_sub, forget_disable_default, forget_all):
        from .tasks import current

        super()._execute(forget_sub, forget_disable_default, forget_all)
        run = current()
        if forget_all:
            names = [f"ct{c}" for c in run.layers]
        elif self.sel_default_tasks and forget_disable_default:
            return 0
        else:
            names = list(self.sel_tasks or [])
        ctids = {c for c in map(task_ctid, names) if c in run.layers}
        if ctids:
            run.set_forced(run.forced() | ctids)
            self.outstream.write(f"phoenix: {', '.join(f'ct{c}' for c in sorted(ctids))} will be rebaked at the next run "
                                 "(with every layer cloned from them)\n")
        return 0
