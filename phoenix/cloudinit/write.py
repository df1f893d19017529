"""Render, check and write a VM's cloud-init files under .cache/cloudinit/<vmid>/ (the `cloudinit:<vmid>` task).

The edge of render.py: secrets are read here from their 0600 files, and the files that may hold them are
written 0600. Nothing here touches a host.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from . import render as R
from .paths import out_dir, targets
from .validate import validate

__all__ = ["out_dir", "preview_instance_id", "render_checked", "secrets_of", "targets", "write"]

if TYPE_CHECKING:
    from ..config.estate import Estate


def secrets_of(estate: Estate, vmid: int, read: Callable[[Path], str]) -> dict[str, str]:
    """The secrets this VM's files need, read from their files (read: e.g. secrets.read_secret)."""
    from ..config.files import resolve

    user = estate.vms[vmid].user_config
    if user is not None and user.password_hash_file:
        return {"password_hash": read(resolve(estate.config_dir, user.password_hash_file))}
    return {}


def preview_instance_id(vmid: int) -> str:
    """The instance-id of the files the task renders; a build writes its own (from the layer's build id)."""
    return f"vm{vmid}-not-built-yet"


def render_checked(estate: Estate, vmid: int, *, instance_id: str, read: Callable[[Path], str]) -> R.Rendered:
    """The VM's files rendered and checked; a ConfigError naming each problem before anything is written."""
    directory = R.templates_dir(estate.library.root)
    rendered = R.render(directory, estate, vmid, instance_id=instance_id, secrets=secrets_of(estate, vmid, read))
    paths = R.template_paths(directory, vmid)
    texts = {name: paths[name].read_text(errors="replace") for name in R.FILES}  # rendered from them just now
    problems = validate(rendered, {name: f"{paths[name]} (rendered for VM {vmid})" for name in R.FILES}, texts)
    if problems:
        raise ConfigError(problems)
    return rendered


def write(cache: Path, rendered: R.Rendered) -> list[Path]:
    """Each file whole (a temporary name, then renamed), mode 0600: user-data may hold a secret."""
    directory = out_dir(cache, rendered.vmid)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in rendered.files.items():
        path = directory / name
        tmp = directory / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
        out.append(path)
    return out
