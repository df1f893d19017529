"""Executing the environment layer's steps against Portainer: the token, an environment, a stack."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

from ..errors import PhoenixError, UnsafeOperation
from . import record

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..hostview import HostView
    from ..steps import DeployStack, PortainerEnv, PortainerToken, RemoveStack
    from .client import Portainer
    from .listing import Listing

LOCAL_URL = "unix:///var/run/docker.sock"
ADOPT_STACK = ("To hand it to Phoenix, remove it in Portainer (its named volumes are kept) and run again: Phoenix "
               "deploys its own; or give Phoenix's stack another name in phoenix_stacks_config.json")


def execute(step: PortainerToken | PortainerEnv | DeployStack | RemoveStack, client: Callable[[], Portainer],
            view: HostView, admin_password: Callable[[], str]) -> None:
    """Run one step; the run's view of Portainer follows."""
    from ..steps import DeployStack, PortainerEnv, PortainerToken, RemoveStack

    if isinstance(step, PortainerToken):
        make_token(step, client(), admin_password())
        view.portainer_changed()
    elif isinstance(step, PortainerEnv):
        register(step, client(), _listing(view))
        view.touched()
    elif isinstance(step, DeployStack):
        deploy(step, client(), _listing(view))
        view.touched()
    elif isinstance(step, RemoveStack):
        client().delete_stack(step.stack_id, step.endpoint)
        _listing(view).removed(step.stack_id)
        view.touched()


def _listing(view: HostView) -> Listing:
    from .listing import OK

    listing = view.portainer()
    if listing is None or listing.state != OK:
        why = "no listing" if listing is None else listing.state
        raise PhoenixError(f"Portainer cannot be read ({why}): build portainer:server first (doit portainer:server)")
    return listing


def make_token(step: PortainerToken, client: Portainer, password: str) -> None:
    """Admin (if the server has none), login, a new API key into its 0600 file; the old file's key is replaced."""
    from ..secrets import write_secret

    client.key = None  # the public routes and the JWT: an old, refused key is not sent
    client.status()
    if not client.admin_exists():
        client.admin_init(step.admin_user, password)
    jwt = client.login(step.admin_user, password)
    key = client.create_key(jwt, password, f"phoenix on {socket.gethostname()} {time.strftime('%Y-%m-%d')}")
    write_secret(step.token_file, key)


def mark(url: str) -> str:
    """The tag Phoenix gives an agent environment it registers: a digest of its URL, which no one sets by chance."""
    import hashlib

    return "phoenix-env-" + hashlib.sha256(f"phoenix environment\0{url}".encode()).hexdigest()[:16]


def register(step: PortainerEnv, client: Portainer, listing: Listing) -> None:
    """The guest's environment, found or registered; the listing then knows it.

    An environment at the guest's URL is used only when it is Phoenix's: it carries Phoenix's tag (mark(url)), or
    Phoenix's stacks record its id, or it is the server's own Docker (Portainer makes it at start, from the -H that
    Phoenix's server guest gives it). One made by hand is refused, not used; so is one of the same name elsewhere."""
    endpoints = client.endpoints()
    url = step.url or LOCAL_URL
    found: dict[str, Any] | None = next((e for e in endpoints if e.get("URL") == url), None)
    if found is not None and step.url:
        tag = mark(url)
        recorded = {s.env.endpoint for s in listing.stacks if s.phoenix and s.env is not None}
        tags = {t for t in found.get("TagIds") or []}
        if int(found["Id"]) not in recorded and not (tags and tag_ids_named(client, tags, tag)):
            raise UnsafeOperation(
                f"Portainer has an environment {found.get('Name')!r} (id {found['Id']}) at {url} that Phoenix did not "
                f"register: refused, not used. To hand it to Phoenix, give it the tag {tag} in Portainer "
                "(Environments, then its Tags); or remove it, and the next run registers Phoenix's own")
    if found is None:
        clash = next((e for e in endpoints if e.get("Name") == step.name), None)
        if clash is not None:
            raise UnsafeOperation(f"Portainer has an environment named {step.name!r} at {clash.get('URL')}, not at "
                                  f"{url}: it is not Phoenix's; rename or remove it in Portainer")
        if step.url:
            found = client.create_agent_endpoint(step.name, step.url, (client.tag(mark(url)),))
        else:
            found = dict(client.call("POST", "/api/endpoints", form={"Name": step.name, "EndpointCreationType": "1",
                                                                      "URL": LOCAL_URL}))
    listing.registered(step.guest, record.EnvFacts(step.identity, step.build_id, int(found["Id"])))


def tag_ids_named(client: Portainer, ids: set[int], name: str) -> bool:
    """Whether one of these tags is the one of this name."""
    return any(int(t.get("ID", -1)) in ids and t.get("Name") == name for t in client.call("GET", "/api/tags"))


def deploy(step: DeployStack, client: Portainer, listing: Listing) -> None:
    """Create the stack, or update Phoenix's; refuse one of the same name that Phoenix did not deploy."""
    from ..secrets import read_secret

    env = listing.env(step.guest)
    if env is None:
        raise PhoenixError(f"CT {step.guest} has no Portainer environment yet: build portainer:env@{step.guest} first")
    values = [{"name": name, "value": value if value is not None else read_secret(file or "")}
              for name, value, file in step.variables]
    values.append(record.make(guest=step.guest, identity=step.identity, build=step.build_id,
                              parent_build=step.parent_build, inputs=dict(step.inputs), env=env))
    mine = listing.stack(step.guest, step.name)
    if mine is not None and mine.endpoint == env.endpoint:
        answer = client.update_stack(mine.stack_id, env.endpoint, step.compose, values, step.pull)
    else:
        other = listing.foreign(env.endpoint, step.name)
        if other is not None:
            raise UnsafeOperation(f"stack {step.name} on environment {env.endpoint} was deployed by hand, not by "
                                  f"Phoenix: refused, not overwritten. {ADOPT_STACK}")
        answer = client.create_stack(env.endpoint, step.name, step.compose, values)
    listing.deployed(answer)
