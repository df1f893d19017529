"""The environment layer's resources (pure): `portainer:server`, `portainer:env@ID` per guest with stacks, and
`stack:NAME@ID` per stack a guest chooses.

- The server's build is Phoenix's API token: built when there is none or the server refuses it; it follows a rebuild
  of the guest that runs it.
- An environment follows its guest (a rebuilt guest has neither the agent nor the stacks): its identity covers the
  agent script and settings; the server's own Docker is the local environment.
- A stack follows its environment; its identity covers the Compose file, the environment's variables (values as
  salted digests), the files' contents and the stack's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...resources import Resource, digest

if TYPE_CHECKING:
    from ...config.estate import Estate
    from ...portainer.target import PortainerTarget

SERVER = "portainer:server"
AGENT_SCRIPT = "portainer_agent.sh"
AGENT_VERSION = "2.33.5"


def guest_key(vmid: int) -> str:
    return f"ct{vmid}"


def env_key(vmid: int) -> str:
    return f"portainer:env@{vmid}"


def stack_key(name: str, vmid: int) -> str:
    return f"stack:{name}@{vmid}"


def server_guest(estate: Estate) -> int | None:
    api = estate.hypervisor.portainer_api
    if api is not None and api.server is not None:
        return api.server
    if api is not None and api.url:
        return None
    return next((c for c, g in sorted(estate.guests.items()) if g.app.portainer.role == "server"), None)


def static_ip(estate: Estate, vmid: int) -> str | None:
    net = estate.guests[vmid].network_config
    if net is None or net.ip == "dhcp":
        return None
    return str(net.ip.ip)


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


def _resources(estate: Estate) -> dict[str, Resource]:
    from ...config.files import resolve
    from ...config.stacks import environment_of, normalise, under
    from ...secrets import read_secret

    chosen = {c: g for c, g in sorted(estate.guests.items()) if g.docker_stacks}
    if not chosen:
        return {}
    out: dict[str, Resource] = {}
    tgt = target(estate)
    server = tgt.server_guest
    from ...config.stacks import normalise as norm

    listed = sorted([vmid, norm(c.name)] for vmid, g in chosen.items() for c in g.docker_stacks)
    out[SERVER] = Resource(SERVER, "portainer", "server", guest_key(server) if server is not None else None, "app",
                           {"admin": digest(tgt.admin_user), "url": digest(tgt.url)},
                           {"target": tgt.to_json(), "stacks": listed},
                           doc=f"Portainer server, Phoenix's API token ({tgt.url or 'simulated'})")
    agent = estate.library.app_path(AGENT_SCRIPT)
    for vmid, guest in chosen.items():
        local = vmid == server
        if local:
            inputs = {"environment": "local"}
            url = ""
        else:
            inputs = {f"app:{AGENT_SCRIPT}": estate.library.app(AGENT_SCRIPT).sha256, "lib": estate.library.lib_sha256(),
                      "config": digest({"port": tgt.agent_port, "version": AGENT_VERSION})}
            url = f"tcp://{static_ip(estate, vmid)}:{tgt.agent_port}"
        where = "the server's own Docker" if local else f"agent {url}"
        out[env_key(vmid)] = Resource(
            env_key(vmid), "portainer", f"env@{vmid}", guest_key(vmid), "app",
            inputs, {"guest": vmid, "url": url, "name": guest.name, "agent": str(agent) if not local else ""},
            doc=f"Portainer environment of CT {vmid}, {where}",
            deps=(SERVER,))
        for choice in guest.docker_stacks:
            stack = estate.stacks.docker_stacks[choice.name]
            env_name = environment_of(stack, choice)
            env = stack.environments[env_name]
            compose = under(estate.project, stack.compose_file_path)
            assert compose is not None  # checked when the config was loaded
            name = normalise(choice.name)
            inputs = {"compose": digest(compose.read_text(encoding="utf-8"), 16), "name": name}
            for v in env.variables:
                value = v.value if v.value is not None else read_secret(resolve(estate.config_dir, v.value_file or ""))
                inputs[f"var:{v.name}"] = digest([choice.name, v.name, value], 16)
            for f in env.files:
                source = under(estate.project, f.source)
                assert source is not None
                inputs[f"file:{f.destination_in_container}"] = digest([f.source, source.read_text(encoding="utf-8")], 16)
            key = stack_key(choice.name, vmid)
            out[key] = Resource(key, "stack", choice.name, env_key(vmid), "app", inputs,
                                {"guest": vmid, "stack": name, "environment": env_name},
                                doc=f"stack {choice.name} ({env_name}) on CT {vmid}" +
                                    (f", {stack.description}" if stack.description else ""))
    return out
