"""Render a VM's cloud-init files from the Jinja templates in cloudinit/ (pure: no host, no secret read here).

Each file has a template, `cloudinit/<name>.yml.j2`, which `cloudinit/<vmid>/<name>.yml.j2` overrides for one VM.
Undefined variables are errors (StrictUndefined) naming the template, its line and the VM. Secrets come in as
values the caller read from their 0600 files; for the layer's identity they are replaced by a marker, so no
digest or log ever depends on a secret's text.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jinja2

from ..errors import ConfigError, Problem
from .paths import FILES, template_files, templates_dir

__all__ = ["FILES", "Rendered", "identity_inputs", "render", "template_files", "templates_dir", "variables"]

if TYPE_CHECKING:
    from ..config.hypervisor import HypervisorConfig
    from ..config.vm import Vm
    from ..features import Library


class Estate(Protocol):
    """What rendering reads of the estate (config.estate.Estate, whose load checks the templates with this module)."""

    @property
    def vms(self) -> dict[int, Vm]: ...
    @property
    def hypervisor(self) -> HypervisorConfig: ...
    @property
    def library(self) -> Library: ...

SECRET_MARK = "<secret {name}: read from its file when the snippet is written>"
PACKAGES = ("qemu-guest-agent",)
SNIPPET_MAX = 1024 * 1024  # Proxmox reads at most 1 MiB per cicustom file


def template_paths(directory: Path, vmid: int) -> dict[str, Path]:
    """The template of each file for this VM: its own override, else the shared one."""
    out = {}
    for name in FILES:
        own = directory / str(vmid) / f"{name}.yml.j2"
        out[name] = own if own.is_file() else directory / f"{name}.yml.j2"
    return out


@dataclass(frozen=True)
class Rendered:
    vmid: int
    files: dict[str, str]   # file name -> text

    def digest(self, name: str) -> str:
        return hashlib.sha256(self.files[name].encode()).hexdigest()[:12]


def variables(estate: Estate, vmid: int, secrets: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the templates see for one VM. secrets: name -> value; a secret not given renders as its marker."""
    vm, hyp = estate.vms[vmid], estate.hypervisor

    def secret(name: str) -> str:
        return (secrets or {}).get(name, SECRET_MARK.format(name=name))

    user = None
    if vm.user_config is not None:
        u = vm.user_config
        user = {"name": u.username, "sudo": u.sudo,
                "ssh_authorized_keys": [u.ssh_public_key] if u.ssh_public_key else [],
                "password_hash": secret("password_hash") if u.password_hash_file else None}
    net = vm.network_config
    if net is None or net.ip == "dhcp":
        network: dict[str, Any] = {"dhcp": True, "address": None, "gateway": None}
    else:
        gw = net.gw or hyp.network.gateway
        network = {"dhcp": False, "address": str(net.ip), "gateway": str(gw) if gw else None}
    nameservers = (net.nameservers if net is not None and net.nameservers else None) or hyp.network.nameservers
    network.update(nameservers=[str(n) for n in nameservers], searchdomain=hyp.network.searchdomain)
    domain = hyp.network.searchdomain
    return {"hostname": vm.vm_name, "fqdn": f"{vm.vm_name}.{domain}" if domain else None,
            "vm": {"id": vmid, "name": vm.vm_name, "description": vm.description, "layer": f"vm{vmid}",
                   "tags": list(vm.tags)},
            "user": user, "network": network, "timezone": hyp.timezone, "packages": list(PACKAGES)}


def _undefined_in_json(value: Any) -> Any:
    """`{{ x | tojson }}` of an undefined x is the same error as `{{ x }}`, not a TypeError."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")


def _dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(value, default=_undefined_in_json, **kwargs)


@functools.lru_cache(maxsize=8)
def _environment(directory: Path) -> jinja2.Environment:
    """One environment per template directory, so each template compiles once per process (Jinja's cache checks a
    template file's mtime on each use: an edited template is compiled again)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(directory)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    env.policies["json.dumps_function"] = _dumps
    return env


def _line(error: BaseException, filename: str) -> int | None:
    """The template line an error was raised at (Jinja maps its frames to template lines)."""
    tb, line = error.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_file(directory: Path, path: Path, vmid: int, values: Mapping[str, Any]) -> str:
    """One template rendered; a ConfigError naming the template, its line and the VM when it cannot be."""
    env = _environment(directory)
    name = path.relative_to(directory).as_posix()
    try:
        template = env.get_template(name)
        return template.render(**values)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError([Problem(str(path), f"line {e.lineno}", f"template syntax error: {e.message}")]) from None
    except jinja2.TemplateNotFound:
        raise ConfigError([Problem(str(path), "$", "template not found: cloudinit/ needs user-data.yml.j2, "
                                                   "network-config.yml.j2 and meta-data.yml.j2")]) from None
    except jinja2.UndefinedError as e:
        line = _line(e, str(path))
        raise ConfigError([Problem(str(path), f"line {line}" if line else "$",
                                   f"rendering it for VM {vmid}: {e.message}")]) from None


def render(directory: Path, estate: Estate, vmid: int, *, instance_id: str,
           secrets: Mapping[str, str] | None = None) -> Rendered:
    values = {**variables(estate, vmid, secrets), "instance_id": instance_id}
    paths = template_paths(directory, vmid)
    return Rendered(vmid, {name: render_file(directory, paths[name], vmid, values) for name in FILES})


def identity_inputs(directory: Path, estate: Estate, vmid: int) -> dict[str, str]:
    """What of the cloud-init files goes into the VM layer's identity: the rendered user-data and network-config
    (secrets as markers), and meta-data's template (its instance-id is the build's, so not its text)."""
    rendered = render(directory, estate, vmid, instance_id="identity")
    meta = template_paths(directory, vmid)["meta-data"]
    return {"cloudinit:user-data": rendered.digest("user-data"),
            "cloudinit:network-config": rendered.digest("network-config"),
            "cloudinit:meta-data": hashlib.sha256(meta.read_bytes()).hexdigest()[:12]}
