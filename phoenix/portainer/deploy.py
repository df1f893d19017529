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
    from ..steps import DeployStack, PortainerCheck, PortainerEnv, PortainerToken, RemoveStack
    from .client import Portainer
    from .listing import Listing

LOCAL_URL = "unix:///var/run/docker.sock"
ADOPT_STACK = ("To hand it to Phoenix, remove it in Portainer (its named volumes are kept) and run again: Phoenix "
               "deploys its own; or give Phoenix's stack another name in phoenix_stacks_config.json; or, if it is "
               "Phoenix's after all (an earlier Phoenix's, or deployed before the admin password changed), keep it "
               "running and run `phoenix adopt` with its guest's ID")


def refused_stack(facts: record.StackFacts) -> str:
    """Why a stack of Phoenix's name is not Phoenix's, and how to hand it over (one line)."""
    if not facts.why:
        return (f"deployed by hand, not Phoenix's: refused, not overwritten (stack {facts.name} on environment "
                f"{facts.endpoint}). {ADOPT_STACK}")
    return (f"not Phoenix's: refused, not overwritten (stack {facts.name} on environment {facts.endpoint}: "
            f"{facts.why}). {ADOPT_STACK}")


def execute(step: PortainerToken | PortainerCheck | PortainerEnv | DeployStack | RemoveStack, client: Callable[[], Portainer],
            view: HostView, admin_password: Callable[[], str]) -> None:
    """Run one step; the run's view of Portainer follows."""
    from ..steps import DeployStack, PortainerCheck, PortainerEnv, PortainerToken, RemoveStack

    if isinstance(step, PortainerCheck):
        check_env(step, client(), _listing(view))
    elif isinstance(step, PortainerToken):
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


def check_env(step: PortainerCheck, client: Portainer, listing: Listing) -> None:
    """What registering the environment again needs, checked before its agent is touched: Phoenix's token works (one
    GET) and the environment at the URL, if any, is Phoenix's."""
    client.call("GET", "/api/users/me")
    _found(step.url, step.name, client, client.endpoints(), listing, step.guest)


def _found(url: str, name: str, client: Portainer, endpoints: list[dict[str, Any]],
           listing: Listing, guest: int) -> dict[str, Any] | None:
    """Phoenix's environment at the URL (None when there is none); UnsafeOperation when the one there, or one of the
    same name elsewhere, is not Phoenix's.

    An environment at the URL is Phoenix's when it carries Phoenix's keyed tag (owner.env_tag: no one without the
    admin password can make it), or Phoenix's verified stack records name its id, or it is the server's own Docker
    (Portainer makes it at start, from the -H that Phoenix's server guest gives it). One made by hand, or tagged by
    an earlier Phoenix (an unkeyed tag) or with another admin password's key, is refused, not used; so is one of the
    same name elsewhere."""
    from .owner import TAG_PREFIX, env_tag

    target = url or LOCAL_URL
    found: dict[str, Any] | None = next((e for e in endpoints if e.get("URL") == target), None)
    if found is not None and url:
        recorded = {s.env.endpoint for s in listing.stacks if s.phoenix and s.env is not None}
        ids = {int(t) for t in found.get("TagIds") or []}
        names = tag_names(client, ids) if ids and int(found["Id"]) not in recorded else set()
        if int(found["Id"]) not in recorded and env_tag(listing.key, url) not in names:
            other = sorted(n for n in names if n.startswith(TAG_PREFIX))
            why = (f" It carries the tag {other[0]}, which is not Phoenix's key's: a tag of an earlier Phoenix "
                   "(unkeyed, which anyone could set) or one made with another Portainer admin password (the key is "
                   "made from secrets.portainer_password_file: if it was changed, that is the likely cause)."
                   if other else "")
            raise UnsafeOperation(
                f"Portainer has an environment {found.get('Name')!r} (id {found['Id']}) at {url} that Phoenix did not "
                f"register: refused, not used.{why} To hand the guest to Phoenix, remove that environment in Portainer "
                "(Environments; the containers on the guest keep running): the next run registers Phoenix's own; or, if it "
                f"is Phoenix's after all, `phoenix adopt {guest}`")
    if found is None:
        clash = next((e for e in endpoints if e.get("Name") == name), None)
        if clash is not None:
            raise UnsafeOperation(f"Portainer has an environment named {name!r} at {clash.get('URL')}, not at "
                                  f"{target}: it is not Phoenix's; rename or remove it in Portainer, or rename "
                                  "Phoenix's guest")
    return found


def register(step: PortainerEnv, client: Portainer, listing: Listing) -> None:
    """The guest's environment, found (when it is Phoenix's: _found) or registered; the listing then knows it."""
    from .owner import env_tag

    found = _found(step.url, step.name, client, client.endpoints(), listing, step.guest)
    if found is None:
        if step.url:
            found = client.create_agent_endpoint(step.name, step.url, (client.tag(env_tag(listing.key, step.url)),))
        else:
            found = dict(client.call("POST", "/api/endpoints", form={"Name": step.name, "EndpointCreationType": "1",
                                                                      "URL": LOCAL_URL}))
    listing.registered(step.guest, record.EnvFacts(step.identity, step.build_id, int(found["Id"])))


def tag_names(client: Portainer, ids: set[int]) -> set[str]:
    """The names of the tags of these ids."""
    return {str(t.get("Name")) for t in client.call("GET", "/api/tags") if int(t.get("ID", -1)) in ids}


def compose_problems(text: str, variables: set[str]) -> list[str]:
    """What `docker compose config` would refuse in the text Phoenix is about to send (the rendered file, configs
    included): YAML, the specification's shape, the compose-spec schema when given, variables without a value."""
    import yaml

    from .. import yamltext
    from ..config.compose import required_variables, schema_problems, shape_problems

    try:
        data = yamltext.safe_load(text)
    except yaml.YAMLError as e:
        return [f"invalid YAML: {getattr(e, 'problem', e)}"]
    out = [*shape_problems(data), *schema_problems(data)]
    missing = [v for v in required_variables(text) if v not in variables]
    if missing:
        out.append(f"{', '.join('${' + v + '}' for v in missing)} used without a default or a value")
    return out


def deploy(step: DeployStack, client: Portainer, listing: Listing) -> None:
    """Create the stack, or update Phoenix's; refuse one of the same name that Phoenix did not deploy."""
    from ..secrets import read_secret

    env = listing.env(step.guest)
    if env is None:
        raise PhoenixError(f"CT {step.guest} has no Portainer environment yet: build portainer:env@{step.guest} first")
    values = [{"name": name, "value": value if value is not None else read_secret(file or "")}
              for name, value, file in step.variables]  # every secret read before anything is sent
    problems = compose_problems(step.compose, {name for name, _, _ in step.variables})
    if problems:
        raise PhoenixError(f"stack {step.name}: the Compose file to send is not valid, so nothing was sent (the stack "
                           f"on Portainer is as it was): {'; '.join(problems)}")
    values.append(record.make(name=step.name, guest=step.guest, identity=step.identity, build=step.build_id,
                              parent_build=step.parent_build, inputs=dict(step.inputs), env=env, key=listing.key))
    mine = listing.stack(step.guest, step.name)
    if mine is not None and mine.endpoint == env.endpoint:
        answer = client.update_stack(mine.stack_id, env.endpoint, step.compose, values, step.pull)
    else:
        other = listing.foreign(env.endpoint, step.name)
        if other is not None:
            raise UnsafeOperation(f"stack {step.name}: {refused_stack(other)}")
        answer = client.create_stack(env.endpoint, step.name, step.compose, values)
    listing.deployed(answer)
