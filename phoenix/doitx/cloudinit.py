"""doit tasks `cloudinit:<vmid>`: render and check a VM's cloud-init files into .cache/cloudinit/<vmid>/, touching no
host. file_dep on the templates and the config files, targets the rendered files: doit's own file hashes skip it
when nothing changed. The VM's task depends on it."""

from __future__ import annotations

from typing import Any

from doit.exceptions import TaskFailed

from ..config.files import HYPERVISOR, SUFFIXES, VM
from ..errors import PhoenixError
from ..runtime import Run


def render_action(run: Run, vmid: int) -> TaskFailed | None:
    from ..cloudinit import write as W
    from ..secrets import read_secret

    try:
        rendered = W.render_checked(run.estate, vmid, instance_id=W.preview_instance_id(vmid), read=read_secret)
        for path in W.write(run.cache, rendered):
            run.say(f"cloudinit:{vmid} wrote {path}")
    except PhoenixError as e:
        return TaskFailed(str(e))
    return None


def cloudinit_tasks(run: Run) -> list[dict[str, Any]]:
    vmids = [r.vmid for r in run.resources.values() if r.kind == "vm" and r.vmid is not None]
    if not vmids:
        return []
    from ..cloudinit import paths as P

    configs = [str(run.config_dir / f"{stem}{s}") for stem in (HYPERVISOR, VM) for s in SUFFIXES
               if (run.config_dir / f"{stem}{s}").exists()]
    templates = [str(p) for p in P.template_files(P.templates_dir(run.images_dir))]
    group = {"basename": "cloudinit", "name": None, "doc": "render and check every VM's cloud-init files (no host)"}
    return [group, *({"basename": "cloudinit", "name": str(vmid), "doc": f"render and check VM {vmid}'s cloud-init files",
             "actions": [(render_action, [run, vmid])], "file_dep": [*templates, *configs],
             "targets": [str(p) for p in P.targets(run.cache, vmid)], "verbosity": 2} for vmid in vmids)]
