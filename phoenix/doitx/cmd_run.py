"""`doit` / `doit run`: doit's own run, telling the Phoenix run whether `--continue` (`-c`) was given.

Without it a run stops at the first failure, as doit does: one problem found by the checks before the first write
stops the whole run, and nothing is written. With it each task whose checks fail is refused on its own, with its own
problems, what is built on it is left unbuilt (doit's unmet dependency), and the rest of the estate builds: every
check of a guest's own build has still passed before anything of it is destroyed or written.
"""

from __future__ import annotations

from typing import Any

from doit.cmd_run import Run as DoitRun

from . import current


class Run(DoitRun):
    # doit passes _execute's parameters by their names: the same signature as doit's own
    def _execute(self, outfile: Any, verbosity: Any = None, always: bool = False, continue_: bool = False,
                 reporter: Any = "console", num_process: int = 0, par_type: str = "process", single: bool = False,
                 auto_delayed_regex: bool = False, force_verbosity: bool = False, failure_verbosity: int = 0,
                 pdb: bool = False) -> Any:
        run = current.RUN
        if run is not None:
            run.keep_going = bool(continue_)
        return super()._execute(outfile, verbosity=verbosity, always=always, continue_=continue_, reporter=reporter,
                                num_process=num_process, par_type=par_type, single=single,
                                auto_delayed_regex=auto_delayed_regex, force_verbosity=force_verbosity,
                                failure_verbosity=failure_verbosity, pdb=pdb)
