"""`doit export [TASK ...]`: layers (and their ancestors) into the artifact store, keyed by identity (issue 15).

Without tasks: every template layer. Each must be built as configured; one the store has already is not dumped
again. See phoenix.artifacts.export.
"""

from __future__ import annotations

from doit.cmd_base import DoitCmdBase

from ..errors import PhoenixError
from . import current


class Export(DoitCmdBase):
    doc_purpose = "copy built layers (and their ancestors) into the artifact store (vzdump), keyed by identity"
    doc_usage = "[TASK ...]"
    doc_description = None
    cmd_options = ()

    def _execute(self, pos_args: list[str] | None = None) -> int:
        from ..artifacts.export import EXPORTABLE, export

        run = current.current()
        wanted = list(pos_args or []) or [k for k, r in run.resources.items()
                                          if r.role == "template" and r.kind in EXPORTABLE]
        unknown = [t for t in wanted if t not in run.resources]
        if unknown:
            self.outstream.write(f"phoenix export: no such task: {', '.join(unknown)} (see `doit list`)\n")
            return 3
        try:
            done = export(run, wanted)
        except PhoenixError as e:
            self.outstream.write(f"phoenix export: {e}\n")
            return 1
        for item in done:
            m = item.manifest
            if item.new:
                self.outstream.write(f"{item.key:<6} exported: {m.archive} ({m.size} bytes, {item.seconds:.2f}s)\n")
            else:
                self.outstream.write(f"{item.key:<6} already in the store: {m.archive}\n")
        return 0
