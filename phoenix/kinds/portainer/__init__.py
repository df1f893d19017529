"""The environment layer as two kinds: `portainer` (the server's API token and the guests' environments) and
`stack` (Compose stacks deployed per environment), decided from the run's one Portainer listing.

Each stack carries Phoenix's record in its own Env on Portainer, signed with Phoenix's key (portainer/record.py,
owner.py): a fresh checkout against a deployed estate redeploys nothing, a stack removed by hand is deployed again,
one whose record does not verify (none, typed, copied, an earlier Phoenix's, another key's) is refused, not
overwritten, and said in time: a stack whose unverified record names the guest is refused by `doit plan` even when
no verified record names the guest's environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...plan import Action, Why
from . import resources as R

if TYPE_CHECKING:
    from ...config.estate import Estate
    from ...hostview import HostView
    from ...plan import Decision
    from ...portainer.record import StackFacts
    from ...resources import Resource
    from ...steps import Step
    from ..base import Context, Prepared


@dataclass(frozen=True)
class ServerFacts:
    """Phoenix's token on the server: it works (refused False) or the server refused it."""

    identity: str
    build_id: str
    refused: bool = False
    unlisted: tuple[StackFacts, ...] = ()  # Phoenix's stacks that no guest lists any more
    building: bool = False
    owner: str | None = None


@dataclass(frozen=True)
class Unreadable:
    """Portainer could not be listed (down, slow, refusing TLS): the environment layer is blocked with the cause, and
    nothing else is; the guests build as if the estate had no stacks."""

    why: str
    identity: str | None = None
    build_id: str | None = None
    phoenix: bool = False
    building: bool = False
    owner: str | None = None


def listing_of(view: HostView) -> Any:
    """The run's Portainer listing, or Unreadable(why) when Portainer cannot be read."""
    from ...errors import PhoenixError

    try:
        return view.portainer()
    except PhoenixError as e:
        return Unreadable(str(e).splitlines()[0])


def unreadable(facts: Any) -> tuple[Why, str] | None:
    if isinstance(facts, Unreadable):
        return Why.UNREACHABLE, f"Portainer cannot be read: {facts.why}"
    return None


class PortainerKind:
    name = "portainer"
    plan_checks = False

    def resources(self, estate: Estate) -> dict[str, Resource]:
        return R.of_kind(estate, self.name)

    def absent(self, res: Resource) -> str:
        return "no API token yet" if res.name == "server" else "not registered in Portainer"

    def facts(self, res: Resource, view: HostView) -> Any:
        from ...portainer.listing import OK, REFUSED

        vmid = res.settings["target"]["server_guest"] if res.name == "server" else res.settings["guest"]
        guest = view.get(int(vmid)) if vmid is not None else None
        if vmid is not None and guest is None:
            return None  # the guest is built first: nothing to ask Portainer yet
        listing = listing_of(view)
        if isinstance(listing, Unreadable):
            return listing
        if listing is None or listing.state not in (OK, REFUSED):
            return None
        if res.name == "server":
            identity = res.identity(guest.build_id if guest is not None else None)
            listed = {(int(g), str(n)) for g, n in res.settings["stacks"]}
            unlisted = tuple(s for s in listing.stacks if s.phoenix and (s.guest, s.name) not in listed)
            return ServerFacts(identity, identity, refused=listing.state == REFUSED, unlisted=unlisted)
        if listing.state != OK:
            return None
        return listing.env(int(res.settings["guest"]))

    def foreign(self, res: Resource, facts: Any) -> tuple[Why, str] | None:
        return unreadable(facts)

    def compare(self, res: Resource, facts: Any, record: dict[str, Any] | None) -> tuple[Action, Why, tuple[str, ...]] | None:
        from ...flags import prune_stacks

        if isinstance(facts, ServerFacts) and facts.refused:
            return Action.REBUILD, Why.INPUTS_CHANGED, ("the server refused Phoenix's API token",)
        if isinstance(facts, ServerFacts) and facts.unlisted and prune_stacks():
            return Action.UPDATE, Why.SETTINGS_CHANGED, tuple(
                f"remove stack {s.name} of CT {s.guest}: no guest lists it (PHOENIX_PRUNE_STACKS)" for s in facts.unlisted)
        return None

    def record(self, res: Resource, ctx: Context) -> dict[str, Any]:
        return {}

    def prepare(self, res: Resource, decision: Decision, ctx: Context) -> Prepared:
        from ...errors import PhoenixError
        from ...secrets import check_private_file
        from ..base import Prepared

        if res.name != "server":
            return Prepared()
        tgt = ctx.portainer_target()
        if tgt.password_file is None:
            return Prepared(None, ("making Phoenix's Portainer API token needs the admin password: set "
                                   f"secrets.portainer_password_file in {ctx.estate.hypervisor_file}",))
        if not ctx.simulated:
            try:
                check_private_file(tgt.password_file, "the Portainer admin password file")
            except PhoenixError as e:
                return Prepared(None, (str(e),))
        return Prepared()

    def steps(self, res: Resource, decision: Decision, prepared: Prepared, ctx: Context, *,
              build_id: str, parent_build: str | None, identity: str | None = None) -> list[Step]:
        from ...steps import PortainerCheck, PortainerEnv, PortainerToken, RemoveStack, Script

        tgt = ctx.portainer_target()
        if res.name == "server" and decision.action == Action.UPDATE:
            facts = self.facts(res, ctx.view)
            return [RemoveStack(f"remove stack {s.name} of CT {s.guest} (no guest lists it)", s.stack_id, s.endpoint)
                    for s in facts.unlisted]
        if res.name == "server":
            return [PortainerToken("make Phoenix's API token", tgt.url, tgt.admin_user, tgt.token_file)]
        guest = int(res.settings["guest"])
        identity = identity or res.identity(parent_build)
        out: list[Step] = []
        if res.settings["url"]:
            out.append(PortainerCheck(f"check Portainer before {res.parent}'s agent", guest,
                                      str(res.settings["name"]), str(res.settings["url"])))
            lib = ctx.estate.library
            context = {"portainer_agent_version": R.AGENT_VERSION, "portainer_agent_port": tgt.agent_port}
            timeout = ctx.estate.hypervisor.behavior.feature_timeout_s
            if res.settings.get("vm"):
                out += agent_in_vm(ctx.node, guest, res.key, context, lib, timeout)
            else:
                out.append(Script(f"run {R.AGENT_SCRIPT}", guest, res.key, R.AGENT_SCRIPT, lib.app_path(R.AGENT_SCRIPT),
                                  lib.lib_path, context, timeout=timeout))
        out.append(PortainerEnv(f"register {res.parent} ({res.settings['name']}) in Portainer", guest,
                                str(res.settings["name"]),
                                str(res.settings["url"]), identity, build_id))
        return out


def agent_in_vm(node: str, vmid: int, key: str, context: dict[str, Any], lib: Any, timeout: float) -> list[Step]:
    """The agent script run in a VM through the guest agent, as the VM kind runs features: files, then an argv list."""
    from ...context import to_env, to_json
    from ...steps import AgentRun
    from ..vm.steps import GUEST_DIR

    run = f"{GUEST_DIR}/portainer"
    files = ((f"{run}/context.json", 0o644, to_json(context).encode()),
             (f"{run}/context.env", 0o644, to_env(context).encode()),
             (f"{run}/phoenix-common.sh", 0o644, lib.lib_path.read_bytes()),
             (f"{run}/{R.AGENT_SCRIPT}", 0o755, lib.app_path(R.AGENT_SCRIPT).read_bytes()))
    return [AgentRun(f"prepare {run}", node, vmid, key, ("mkdir", "-p", "-m", "0755", run), timeout=60),
            AgentRun(f"run {R.AGENT_SCRIPT}", node, vmid, key,
                     ("/usr/bin/env", f"PHOENIX_CONTEXT={run}/context.json", f"PHOENIX_ENV={run}/context.env",
                      f"PHOENIX_LIB={run}/phoenix-common.sh", "/bin/bash", f"{run}/{R.AGENT_SCRIPT}"), files, timeout)]


class StackKind:
    name = "stack"
    plan_checks = False

    def resources(self, estate: Estate) -> dict[str, Resource]:
        return R.of_kind(estate, self.name)

    def absent(self, res: Resource) -> str:
        return "not deployed"

    def facts(self, res: Resource, view: HostView) -> Any:
        from ...portainer.listing import OK

        guest = int(res.settings["guest"])
        if view.get(guest) is None:
            return None
        listing = listing_of(view)
        if isinstance(listing, Unreadable):
            return listing
        if listing is None or listing.state != OK:
            return None
        found = listing.stack(guest, res.settings["stack"])
        if found is not None:
            return found
        env = listing.env(guest)
        if env is not None:
            return listing.foreign(env.endpoint, res.settings["stack"])
        return listing.claimed(guest, res.settings["stack"])  # no verified record names the guest's environment

    def foreign(self, res: Resource, facts: Any) -> tuple[Why, str] | None:
        if isinstance(facts, Unreadable):
            return unreadable(facts)
        if not facts.phoenix:
            from ...portainer.deploy import refused_stack

            return Why.FOREIGN, refused_stack(facts)
        return None

    def compare(self, res: Resource, facts: Any, record: dict[str, Any] | None) -> tuple[Action, Why, tuple[str, ...]] | None:
        return None

    def record(self, res: Resource, ctx: Context) -> dict[str, Any]:
        facts = self.facts(res, ctx.view)
        if facts is None or not facts.phoenix:
            return {}
        return {"inputs": facts.inputs, "parent_build": facts.parent_build}

    def prepare(self, res: Resource, decision: Decision, ctx: Context) -> Prepared:
        from ..base import Prepared

        return Prepared()

    def steps(self, res: Resource, decision: Decision, prepared: Prepared, ctx: Context, *,
              build_id: str, parent_build: str | None, identity: str | None = None) -> list[Step]:
        from ...config.stacks import under
        from ...flags import pull_images
        from ...portainer.render import compose_with_files
        from ...steps import DeployStack

        estate = ctx.estate
        stack = estate.stacks.docker_stacks[res.name]
        env = stack.environments[res.settings["environment"]]
        compose = under(estate.project, stack.compose_file_path)
        assert compose is not None
        files = []
        for f in env.files:
            source = under(estate.project, f.source)
            assert source is not None
            files.append((f.destination_in_container, source.read_text(encoding="utf-8")))
        from ...config.files import resolve

        variables = tuple((v.name, v.value, str(resolve(estate.config_dir, v.value_file)) if v.value_file else None)
                          for v in env.variables)
        verb = "deploy" if decision.action == Action.BUILD else "redeploy"
        return [DeployStack(f"{verb} stack {res.settings['stack']} ({res.settings['environment']})",
                            int(res.settings["guest"]), str(res.settings["stack"]),
                            compose_with_files(compose.read_text(encoding="utf-8"), files), variables,
                            identity or res.identity(parent_build), build_id, parent_build, dict(res.inputs),
                            pull=pull_images())]


PORTAINER = PortainerKind()
STACK = StackKind()
