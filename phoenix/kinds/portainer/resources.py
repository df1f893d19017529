"""The environment layer's resources (pure): `portainer:server`, `portainer:env@ID` per guest with stacks, and
`stack:NAME@ID` per stack a guest chooses.

- The server's build is Phoenix's API token: built when there is none or the server refuses it; it follows a rebuild
  of the guest that runs it.
- An environment follows its guest (a rebuilt guest has neither the agent nor the stacks): its identity covers the
  agent script and settings; the server's own Docker is the local environment.
- A stack follows its environment; its identity covers the Compose file, the environment's variables (values as
  digests keyed with Phoenix's ownership key, portainer/owner.py: no one without the admin password can test a guess
  at a secret against them), the files' contents and the stack's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...resources import Resource, digest

if TYPE_CHECKING:
    from ...config.estate import Estate
    from ...config.stacks import StackChoices
    from ...portainer.target import PortainerTarget

SERVER = "portainer:server"
AGENT_SCRIPT = "portainer_agent.sh"
AGENT_VERSION = "2.33.5"


def guest_key(estate: Estate, vmid: int) -> str:
    return f"vm{vmid}" if vmid in estate.vms else f"ct{vmid}"


def env_key(vmid: int) -> str:
    return f"portainer:env@{vmid}"


def stack_key(name: str, vmid: int) -> str:
    return f"stack:{name}@{vmid}"


def server_guest(estate: Estate) -> int | None:
    return estate.portainer_server()


def static_ip(estate: Estate, vmid: int) -> str | None:
    return estate.static_ip(vmid)


def chosen_guests(estate: Estate) -> dict[int, tuple[str, StackChoices]]:
    """Every guest (container or VM) that chooses stacks: its name and its choices."""
    out: dict[int, tuple[str, StackChoices]] = {c: (g.name, g.docker_stacks) for c, g in estate.guests.items()
                                                if g.docker_stacks}
    out.update({v: (vm.vm_name, vm.docker_stacks) for v, vm in estate.vms.items() if vm.docker_stacks})
    return dict(sorted(out.items()))


def target(estate: Estate) -> PortainerTarget:
    from ...config.files import resolve
    from ...portainer.target import PortainerTarget

    hyp = estate.hypervisor
    api = hyp.portainer_api
    server = server_guest(estate)
    url = (api.url or "").rstrip("/") if api is not None else ""
    if not url and server is not None:
        ip = static_ip(estate, server)
        url = f"https://{ip}:{estate.guests[server].app.portainer.port}" if ip else ""
    password = hyp.secrets.file("portainer_password")
    verify: bool | str = True
    if api is not None:
        verify = str(resolve(estate.config_dir, api.ca_file)) if api.ca_file else api.verify_tls
    token_file = api.token_file if api is not None else "phoenix_portainer_token.conf"
    return PortainerTarget(url, str(resolve(estate.config_dir, token_file)), verify,
                           api.fingerprint if api is not None else None, api.timeout_s if api is not None else 30,
                           api.admin_user if api is not None else "admin",
                           str(resolve(estate.config_dir, password)) if password else None,
                           api.agent_port if api is not None else 9001, server)


def resources(estate: Estate) -> dict[str, Resource]:
    """The server, the environments and the stacks, parents first (empty when no guest chooses a stack); made once
    per estate for both kinds."""
    found = estate.__dict__.get("_portainer_resources")
    if found is None:
        found = estate.__dict__["_portainer_resources"] = _resources(estate)
    return dict(found)


def of_kind(estate: Estate, kind: str) -> dict[str, Resource]:
    """The resources of one of the two kinds ("portainer" or "stack"), parents first."""
    return {k: r for k, r in resources(estate).items() if r.kind == kind}


def _resources(estate: Estate) -> dict[str, Resource]:
    from ...config.files import resolve
    from ...config.stacks import environment_of, normalise, under
    from ...portainer.owner import key_of, secret_digest
    from ...secrets import read_secret

    chosen = chosen_guests(estate)
    if not chosen:
        return {}
    out: dict[str, Resource] = {}
    tgt = target(estate)
    owner = key_of(tgt.password_file)  # the config requires the file (config/estate.py: portainer_password)
    server = tgt.server_guest
    from ...config.stacks import normalise as norm

    listed = sorted([vmid, norm(c.name)] for vmid, (_, choices) in chosen.items() for c in choices)
    out[SERVER] = Resource(SERVER, "portainer", "server", guest_key(estate, server) if server is not None else None, "app",
                           {"admin": digest(tgt.admin_user), "url": digest(tgt.url)},
                           {"target": tgt.to_json(), "stacks": listed},
                           doc="Portainer server, Phoenix's API token")
    agent = estate.library.app_path(AGENT_SCRIPT)
    for vmid, (guest_name, choices) in chosen.items():
        local = vmid == server
        if local:
            inputs = {"environment": "local"}
            url = ""
        else:
            inputs = {f"app:{AGENT_SCRIPT}": estate.library.app(AGENT_SCRIPT).sha256, "lib": estate.library.lib_sha256(),
                      "config": digest({"port": tgt.agent_port, "version": AGENT_VERSION})}
            url = f"tcp://{static_ip(estate, vmid)}:{tgt.agent_port}"
        where = "the server's own Docker" if local else f"agent {static_ip(estate, vmid)} port {tgt.agent_port}"
        out[env_key(vmid)] = Resource(
            env_key(vmid), "portainer", f"env@{vmid}", guest_key(estate, vmid), "app",
            inputs, {"guest": vmid, "url": url, "name": guest_name, "agent": str(agent) if not local else "",
                     "vm": vmid in estate.vms},
            doc=f"Portainer environment of {guest_key(estate, vmid)}, {where}",
            deps=(SERVER,))
        for choice in choices:
            stack = estate.stacks.docker_stacks[choice.name]
            env_name = environment_of(stack, choice)
            env = stack.environments[env_name]
            compose = under(estate.project, stack.compose_file_path)
            assert compose is not None  # checked when the config was loaded
            name = normalise(choice.name)
            inputs = {"compose": digest(compose.read_text(encoding="utf-8"), 16), "name": name}
            for v in env.variables:
                value = v.value if v.value is not None else read_secret(resolve(estate.config_dir, v.value_file or ""))
                inputs[f"var:{v.name}"] = secret_digest(owner, choice.name, v.name, value)
            for f in env.files:
                source = under(estate.project, f.source)
                assert source is not None
                inputs[f"file:{f.destination_in_container}"] = digest([f.source, source.read_text(encoding="utf-8")], 16)
            key = stack_key(choice.name, vmid)
            out[key] = Resource(key, "stack", choice.name, env_key(vmid), "app", inputs,
                                {"guest": vmid, "stack": name, "environment": env_name},
                                doc=f"stack {choice.name} ({env_name}) on {guest_key(estate, vmid)}" +
                                    (f", {stack.description}" if stack.description else ""))
    return out
