"""Container layers (LXC): the first kind. Tasks `ctNNN`; a bake clones the parent layer and runs feature scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import PhoenixError
from ...facts import guests as F
from ...plan import Action, Why
from . import resources as R
from . import rules

if TYPE_CHECKING:  # building needs these; deciding (a run with nothing to do) does not
    from ...config.estate import Estate
    from ...hostview import HostView
    from ...plan import Decision
    from ...resources import Resource
    from ...steps import Step
    from ..base import Context, Prepared


def explain_lock(ctx: Context, ctid: int, lock: str) -> str:
    """Why a guest is locked: a task still running (Proxmox lists a clone under its source), or a dead one's lock."""
    tasks = ctx.pve().get(f"nodes/{ctx.node}/tasks", source="active")
    active = [t for t in tasks if t.get("status") == "running" or not t.get("endtime")]
    mine = [t for t in active if str(t.get("id")) == str(ctid)]
    clones = [t for t in active if t.get("type") in ("vzclone", "qmclone") and str(t.get("id")) != str(ctid)]
    if mine:
        return (f"CT {ctid} is locked ({lock}) by a task still running on the node: {mine[0].get('upid')}. "
                "Wait for it to end (see the node's task log), then rerun.")
    if lock == "create" and clones:
        return (f"CT {ctid} is locked ({lock}) by a clone still running on the node: {clones[0].get('upid')} (Proxmox "
                f"lists a clone under its source, CT {clones[0].get('id')}). Wait for it to end, then rerun.")
    unlock = f"python -m phoenix.sim unlock {ctid}" if ctx.simulated else f"`pct unlock {ctid}` on the node"
    return (f"CT {ctid} is locked ({lock}) but no task is running: an interrupted operation left the lock. "
            f"Check the guest, then run {unlock} and rerun.")


class LxcKind:
    name = R.KIND
    plan_checks = False  # the checks read the guests' configs and the node over SSH: `doit plan --steps` runs them

    def resources(self, estate: Estate) -> dict[str, Resource]:
        return R.resources(estate)

    def facts(self, res: Resource, view: HostView) -> F.GuestFacts | None:
        assert res.vmid is not None
        return view.get(res.vmid)

    foreign = staticmethod(rules.foreign)
    compare = staticmethod(rules.compare)

    def record(self, res: Resource, ctx: Context) -> dict[str, Any]:
        facts = ctx.view.get(res.vmid or 0)
        node = facts.node if facts is not None and facts.node else ctx.node  # where it is
        config = ctx.pve().get(f"nodes/{node}/lxc/{res.vmid}/config")
        return F.parse_record(config.get("description"))

    # ------------------------------------------------------------------ prepare

    def prepare(self, res: Resource, decision: Decision, ctx: Context) -> Prepared:
        """Read what the build needs and check it, before anything is written: the storages and their content,
        the OS template, the scripts and their secrets, the node (SSH, GPUs, bind-mounted directories), and the
        guests the build replaces or updates (protection, locks)."""
        from ...config.files import resolve
        from ..base import Prepared
        from ..bridges import problems as bridge_problems
        from ..ha import refused as ha_refused
        from . import checks
        from . import params as P
        from . import steps as S

        ctid = res.vmid
        assert ctid is not None
        estate, g = ctx.estate, ctx.estate.guests[res.vmid or 0]
        bake = decision.action.bakes
        problems: list[str] = []
        if decision.why == Why.STOPPED:  # only started: nothing to read
            return Prepared({}, ())
        from ..host.storage import as_set_up, pending

        storages = as_set_up(estate, ctx.once("storages", lambda: ctx.pve().get(f"nodes/{ctx.node}/storage")),
                             pending(ctx))
        problems += checks.storage_problems(estate, ctid, storages, bake=bake)
        if decision.artifact is not None:
            problems += checks.backup_storage_problems(estate, storages)
        if bake:
            problems += checks.script_problems(estate, ctid)
            problems += checks.secret_problems(estate, ctid, lambda path: resolve(estate.config_dir, path),
                                               simulated=ctx.simulated)
        node_ok = True
        uses_node = bool(P.root_options(res.settings, {}, g.unprivileged)) or (bake and bool(g.gpu_assignment or g.features
                                                                                  or g.application_script))
        if uses_node:
            try:
                ctx.once("node check", lambda: ctx.transport().check())
            except PhoenixError as e:
                problems.append(str(e))
                node_ok = False
        update = decision.action == Action.UPDATE
        config = ctx.pve().get(S.lxc(ctx.node, ctid, "/config")) if update and decision.why != Why.COPIES else {}
        problems += bridge_problems(ctx, f"CT {ctid} ({res.key})", res.settings["net0"], config.get("net0") if update else None)
        binds = [mp.host_path for mp in g.mount_points if mp.host_path]
        dirs: tuple[str, ...] = ()
        give: tuple[str, ...] = ()
        if binds and node_ok:
            try:
                missing = ctx.transport().missing_paths(binds)
                problems += checks.host_path_problems(estate, ctid, missing)
                dirs = tuple(mp.host_path for mp in g.mount_points if mp.host_path in missing and mp.create_host_path)
                mounted = checks.mounted_host_paths(config)  # an update checks only the mounts it adds
                owned = [p for p, _ in checks.owned_binds(estate, ctid) if p not in missing and p not in mounted]
                found, give = checks.bind_owner_problems(estate, ctid, ctx.transport().dir_owners(owned) if owned else {})
                problems += found
            except PhoenixError as e:
                problems.append(str(e))
        facts = ctx.view.get(ctid)
        plans: list[Any] = []
        if decision.copies and update:  # its copies on the members where children of it go
            from ..members import copy_plans

            plans, found = copy_plans(ctx, res, decision.copies, estate.storage(ctid), g.convert_to_template)
            problems += found
        if update:
            assert facts is not None
            if config.get("lock"):
                problems.append(explain_lock(ctx, ctid, str(config["lock"])))
            target = res.settings.get("node")
            if target and facts.node and target != facts.node and decision.why != Why.COPIES:
                problems += move_problems(ctx, ctid, facts.node, target)
            return Prepared({"config": config, "facts": facts, "dirs": dirs, "give": give, "copies": plans},
                            tuple(problems))
        replaced: list[S.Replaced] = []
        keep = S.HandSet()
        if facts is not None and facts.node and facts.node != ctx.node and any(mp.host_path for mp in g.mount_points):
            problems.append(f"CT {ctid} is rebuilt on {ctx.node}, but it bind-mounts host directories of {facts.node} "
                            f"({', '.join(mp.host_path for mp in g.mount_points if mp.host_path)}): their data would stay "
                            f"behind. Move the data to {ctx.node} first, or set node to {facts.node}")
        if facts is not None:
            on_host = [ctid]
            if g.convert_to_template:  # linked clones hold the template's base volume: they go first, deepest first
                on_host = [c for c in reversed(estate.descendants(ctid)) if ctx.view.get(c) is not None] + on_host
            for c in on_host:
                f = ctx.view.get(c)
                assert f is not None
                if not f.managed:
                    problems.append(f"CT {c} is not Phoenix's (no 'phoenix' tag and record): refusing to destroy it")
                    continue
                on = f.node or ctx.node   # it is destroyed where it is (a rebuild may place it elsewhere)
                config = ctx.pve().get(S.lxc(on, c, "/config"))
                if config.get("protection") and not ctx.allow_protected(c):
                    problems.append(protected(c))
                if config.get("lock"):
                    problems.append(explain_lock(ctx, c, str(config["lock"])))
                problems += ha_refused("lxc", c, f"lxc_configs.{c}", f, estate.guests[c].ha is not None
                                       if c in estate.guests else False)
                replaced.append(S.Replaced(c, config, f.status == "running", on, f.hastate is not None))
                if c == ctid:
                    old = F.parse_record(config.get("description")).get("settings")
                    keep = S.hand_set(f, old, int(config.get("protection") or 0))
        if decision.copies:  # its copies; what the bake destroys already (its linked clones there) is not in them
            from ..members import copy_plans

            plans, found = copy_plans(ctx, res, decision.copies, estate.storage(ctid), g.convert_to_template,
                                      {r.vmid for r in replaced})
            problems += found
        download = False
        if g.clone_from_ctid is None:
            volume = estate.os_template(ctid)
            storage, filename = P.volume_filename(volume.volume)
            content = ctx.once(f"content {storage}", lambda: ctx.pve().get(f"nodes/{ctx.node}/storage/{storage}/content",
                                                                            content="vztmpl"))
            if not any(item.get("volid") == volume.volume for item in content):
                if not volume.url:
                    problems.append(f"OS template {volume.volume} is not in storage {storage} and has no url to fetch it "
                                    f"from: download it (pveam download {storage} {filename}) or set os_templates.*.url")
                else:  # the node will fetch it: ask the node whether it can, before anything is destroyed
                    try:
                        ctx.once(f"url {volume.url}", lambda: ctx.pve().get(f"nodes/{ctx.node}/query-url-metadata",
                                                                             url=volume.url))
                    except PhoenixError as e:
                        problems.append(f"OS template {volume.volume} is not in storage {storage}, and the node cannot "
                                        f"fetch it from {volume.url}: {e}")
                download = True
        devices: dict[str, str] = {}
        node_facts = None
        if node_ok and uses_node:
            try:
                node_facts = ctx.node_facts()
                problems += checks.docker_host_problems(estate, ctid, node_facts.lxc_pve_version)
                if g.gpu_assignment:
                    devices = P.gpu_devices(list(g.gpu_assignment), node_facts.nvidia_devices)
            except PhoenixError as e:
                problems.append(str(e))
        source = None
        if g.clone_from_ctid is not None:
            from ..members import clone_source

            try:
                source = clone_source(ctx, res, g.clone_from_ctid, estate.storage(g.clone_from_ctid), estate.storage(ctid))
            except PhoenixError as e:
                problems.append(str(e))
        return Prepared({"replaced": tuple(replaced), "download": download, "devices": devices, "node_facts": node_facts,
                         "keep": keep, "dirs": dirs, "give": give, "source": source, "copies": plans},
                        tuple(problems))

    # -------------------------------------------------------------------- steps

    def steps(self, res: Resource, decision: Decision, prepared: Prepared, ctx: Context, *,
              build_id: str, parent_build: str | None, identity: str | None = None) -> list[Step]:
        from . import steps as S

        data = prepared.data
        g = ctx.estate.guests[res.vmid or 0]
        running = not ((g.is_template_layer and ctx.estate.hypervisor.behavior.stop_templates_after_build)
                       or g.convert_to_template)
        if decision.why == Why.STOPPED:
            from ..running import start

            return [start(S.lxc(ctx.node, res.vmid or 0), res.vmid or 0)]
        if decision.action == Action.UPDATE:
            facts = data["facts"]
            out = [] if decision.why == Why.COPIES else \
                S.update(ctx.estate, res, ctx.node, facts, data["config"], "; ".join(decision.reasons), data["dirs"],
                         data["give"])
            return out + S.copies(ctx.estate, res, ctx.node, data["copies"], facts.identity or "", facts.build_id or "",
                                  parent_build, ctx.owner, facts.status == "running")
        keep: S.HandSet = data["keep"]
        m = decision.artifact
        if m is not None and ctx.artifacts is not None:  # restored: the archive's identity and build ids
            bake = S.Bake(m.identity, m.build, m.parent_build, ctx.owner, data["replaced"], False, data["devices"],
                          data["node_facts"], keep.tags, keep.protection, data["dirs"], data["give"], data["source"])
            return S.restore(ctx.estate, res, ctx.node, bake, ctx.artifacts / m.archive, m) + \
                S.copies(ctx.estate, res, ctx.node, data["copies"], m.identity, m.build, m.parent_build, ctx.owner,
                         running)
        bake = S.Bake(identity or res.identity(parent_build), build_id, parent_build, ctx.owner, data["replaced"],
                      data["download"], data["devices"], data["node_facts"], keep.tags, keep.protection, data["dirs"],
                      data["give"], data["source"])
        return S.bake(ctx.estate, res, ctx.node, bake) + \
            S.copies(ctx.estate, res, ctx.node, data["copies"], bake.identity, build_id, parent_build, ctx.owner, running)


def move_problems(ctx: Context, ctid: int, here: str, target: str) -> list[str]:
    """What stops moving a container to the member the config now names (pure reads of the config and listing)."""
    g = ctx.estate.guests[ctid]
    out = []
    member = ctx.view.cluster().nodes.get(target)
    if member is None or not member.online:
        out.append(f"the config places CT {ctid} on {target}, which is {'offline' if member else 'not a member'}")
    binds = [mp.host_path for mp in g.mount_points if mp.host_path]
    if binds:
        out.append(f"the config places CT {ctid} on {target}, but it bind-mounts host directories of {here} "
                   f"({', '.join(b for b in binds if b)}): their data does not move with it. Move the data to {target} "
                   f"and the guest with `pct migrate {ctid} {target} --restart`, then run again; or set node back to "
                   f"{here}")
    kids = [c for c in ctx.estate.children(ctid) if ctx.view.get(c) is not None]
    if g.convert_to_template and kids:
        out.append(f"the config places CT {ctid} on {target}, but it is a template with linked clones "
                   f"({', '.join(f'CT {c}' for c in kids)}) on the host, which hold its disk: rebuild it there with "
                   f"`doit forget ct{ctid}` (they follow), or set node back to {here}")
    return out


def protected(ctid: int) -> str:
    from ...flags import ALLOW_PROTECTED

    return (f"CT {ctid} has protection set, and rebuilding it would destroy it. "
            f"To allow it for this run: {ALLOW_PROTECTED}={ctid} doit ...; or clear the flag: "
            f"pct set {ctid} --protection 0 (and remove protection from its config). Data on "
            "host_path mount points survives a rebuild; data inside the container does not.")


LXC = LxcKind()

__all__ = ["LXC", "LxcKind", "Why"]
