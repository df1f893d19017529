"""The estate check of the cloud-init templates (with the config, before any request): each VM's files rendered
(secrets as their markers: no secret is read here) and validated; one problem said once for the VMs it concerns,
at the template and line it comes from."""

from __future__ import annotations

from pathlib import Path

from ..config.rules import inside
from ..errors import ConfigError, Problem
from . import render as R
from .render import Estate
from .validate import findings, problem


def check_templates(estate: Estate) -> list[Problem]:
    directory = R.templates_dir(estate.library.root)
    out = [Problem(str(p), "$", f"leads to {p.resolve()}, outside {directory}: a template is a file inside cloudinit/ "
                                "(a link out of it would send that file to the node)")
           for p in sorted(directory.rglob("*")) if not p.is_dir() and not inside(p, directory)] \
        if directory.is_dir() else []
    if out:
        return out
    seen: dict[tuple[str, str, str], list[int]] = {}
    for vmid in sorted(estate.vms):
        paths = R.template_paths(directory, vmid)
        try:
            rendered = R.render(directory, estate, vmid, instance_id=f"phx-{vmid}-check")
        except ConfigError as e:
            found = e.problems
        else:
            texts = {name: _text(paths[name]) for name in R.FILES}
            found = [problem(rendered, f, str(paths[f.name]), texts[f.name]) for f in findings(rendered)]
        for p in found:
            message = p.message.removeprefix(f"rendering it for VM {vmid}: ")  # the VMs are named below, all of them
            seen.setdefault((p.file, p.path, message), []).append(vmid)
    for (file, path, message), vmids in seen.items():
        which = ", ".join(map(str, vmids))
        out.append(Problem(file, path, f"{message} (rendered for VM{'s' if len(vmids) > 1 else ''} {which})"))
    return out


def _text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None
