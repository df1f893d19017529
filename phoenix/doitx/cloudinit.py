"""doit tasks `cloudinit:<vmid>`: render and check a VM's cloud-init files into .cache/cloudinit/<vmid>/, touching no
host. file_dep on the templates and the config files, targets the rendered files: doit's own file hashes skip it
when nothing changed. The VM's task depends on it."""

from __future__ import annotations

import time
from typing import Any

from doit.exceptions import TaskFailed

from ..config.files import HYPERVISOR, SUFFIXES, VM
from ..errors import PhoenixError
from ..runtime import Run


def render_action(run: Run, vmid: int) -> TaskFailed | None:
    """Render, check and write; a failure (a secret that cannot be read, a cache that cannot be written) is one
    message, and the task counts as failed in the summary and .cache/last-run.json (its VM, which waits, is left out)."""
    from ..cloudinit import write as W
    from ..secrets import read_secret

    key, t0 = f"cloudinit:{vmid}", time.monotonic()
    try:
        rendered = W.render_checked(run.estate, vmid, instance_id=W.preview_instance_id(vmid), read=read_secret)
        for path in W.write(run.cache, rendered):
            run.say(f"{key} wrote {path}")
    except PhoenixError as e:
        run.outcomes.note(key, "failed", time.monotonic() - t0)
        return TaskFailed(str(e))
    except OSError as e:
        run.outcomes.note(key, "failed", time.monotonic() - t0)
        where = e.filename or W.out_dir(run.cache, vmid)
        return TaskFailed(f"{key}: cannot write VM {vmid}'s cloud-init files under {W.out_dir(run.cache, vmid)}: "
                          f"{e.strerror or e} ({where}); make that directory writable by the user running Phoenix "
                          "(or remove it: .cache/ is always safe to delete)")
    return None


def cloudinit_tasks(run: Run) -> list[dict[str, Any]]:
    vmids = [r.vmid for r in run.resources.values() if r.kind == "vm" and r.vmid is not None]
    if not vmids:
        return []
    from ..cloudinit import paths as P

    configs = [str(run.config_dir / f"{stem}{s}") for stem in (HYPERVISOR, VM) for s in SUFFIXES
               if (run.config_dir / f"{stem}{s}").exists()]
    templates = [str(p) for p in P.template_files(P.templates_dir(run.images_dir))]
    # each its own basename (as portainer:server is), not subtasks of a group `cloudinit`: doit shows a group task in
    # `doit list` with the generator's docstring and as R (will run) in `doit list --status` however up to date it is
    return [{"basename": f"cloudinit:{vmid}", "doc": f"render and check VM {vmid}'s cloud-init files",
             "actions": [(render_action, [run, vmid])], "file_dep": [*templates, *configs],
             "targets": [str(p) for p in P.targets(run.cache, vmid)], "verbosity": 2} for vmid in vmids]
