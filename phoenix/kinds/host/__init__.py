"""The node itself as layers: `host:repos`, `host:storage`, `host:network`, `host:access`, `host:nvidia`.

Each part is decided like a guest layer: its identity (its config slice, and for the driver its version and script)
is recorded on the host, in the node's notes, so a second run is a no-op and a fresh checkout against a set-up node
changes nothing. Guests depend on the parts they need (a GPU layer on host:nvidia, every guest on host:storage and
host:network). A part is applied idempotently: what the node already has is read first, and only the difference is
changed; the record is written last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...facts.node import HostFacts
from ...plan import Action, Why
from . import resources as R

if TYPE_CHECKING:
    from ...config.estate import Estate
    from ...hostview import HostView
    from ...plan import Decision
    from ...resources import Resource
    from ...steps import Step
    from ..base import Context, Prepared


class HostKind:
    name = R.KIND
    plan_checks = True  # `doit plan` says what would be refused (e.g. a change to the management bridge)

    def resources(self, estate: Estate) -> dict[str, Resource]:
        return R.resources(estate)

    def facts(self, res: Resource, view: HostView) -> HostFacts | None:
        found = view.host_record(res.place["node"]).get(res.key)
        if not found:
            return None
        return HostFacts(str(found.get("identity") or "") or None, dict(found.get("inputs") or {}))

    def foreign(self, res: Resource, facts: Any) -> tuple[Why, str] | None:
        return None  # the node is the estate's own

    def compare(self, res: Resource, facts: Any, record: dict[str, Any] | None) -> tuple[Action, Why, tuple[str, ...]] | None:
        """A part has no settings to change in place (a change is a new identity); the API token is made again when
        its file is lost, as the node cannot give its secret back."""
        from pathlib import Path

        from .access import usable

        file = res.settings.get("token_file")
        if file and not usable(Path(file)):
            return Action.REBUILD, Why.INPUTS_CHANGED, (f"the token file {file} is missing (or not 0600): made again",)
        return None

    def record(self, res: Resource, ctx: Context) -> dict[str, Any]:
        found = ctx.view.host_record(res.place["node"]).get(res.key) or {}
        return {"inputs": found.get("inputs") or {}}

    def prepare(self, res: Resource, decision: Decision, ctx: Context) -> Prepared:
        """Read what the node has for this part and check the config against it, before anything is changed."""
        from ...config.files import resolve
        from ...errors import PhoenixError
        from ..base import Prepared
        from . import access, network, nvidia, repos, storage

        host = ctx.estate.hypervisor.host
        assert host is not None
        part = res.name
        cfg = getattr(host, part)
        problems: list[str] = []
        data: Any
        try:
            if part == "repos":
                data = repos.read(ctx)
            elif part == "storage":
                data = storage.read(cfg, ctx)
                problems += storage.problems(cfg, data)
            elif part == "network":
                data = network.read(ctx)
                problems += network.problems(cfg, data, ctx.api_host)
            elif part == "access":
                file = resolve(ctx.estate.config_dir, cfg.token_file)
                data = (file, access.read(cfg, ctx, file))
            else:
                facts = ctx.transport().facts()  # read now: a driver installed earlier in this run shows
                hyp = ctx.estate.hypervisor
                problems += nvidia.problems(facts, hyp.nvidia.driver_version or "", hyp.gpus_of(ctx.node))
                data = facts
        except PhoenixError as e:
            return Prepared(None, (str(e),))
        return Prepared(data, tuple(problems))

    def steps(self, res: Resource, decision: Decision, prepared: Prepared, ctx: Context, *,
              build_id: str, parent_build: str | None, identity: str | None = None) -> list[Step]:
        from ...steps import NoteHost
        from . import access, network, nvidia, repos, storage

        host = ctx.estate.hypervisor.host
        assert host is not None
        part, data = res.name, prepared.data
        cfg = getattr(host, part)
        out: list[Step]
        if part == "repos":
            out = repos.steps(cfg, data, ctx.node)
        elif part == "storage":
            out = storage.steps(cfg, data, ctx.node)
        elif part == "network":
            out = network.steps(cfg, data, ctx.node)
        elif part == "access":
            file, found = data
            out = access.steps(cfg, found, file)
        else:
            hyp = ctx.estate.hypervisor
            out = nvidia.steps(cfg, data, hyp.nvidia.driver_version or "", hyp.gpus_of(ctx.node), ctx.estate.library,
                               res.key)
        identity = identity or res.identity(None)
        return [*out, NoteHost(f"record {res.key}", ctx.node, res.key, identity, res.inputs)]


HOST = HostKind()

