"""VM layers: the second guest kind. Tasks `vmNNNN`; a root is made from a cloud image, the others are cloned from
their parent layer; cloud-init snippets rendered from cloudinit/ reach the node over SFTP; features run through
the guest agent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import PhoenixError
from ...facts import guests as F
from ...plan import Action, Why
from . import resources as R
from . import rules

if TYPE_CHECKING:
    from ...config.estate import Estate
    from ...hostview import HostView
    from ...plan import Decision
    from ...resources import Resource
    from ...steps import Step
    from ..base import Context, Prepared


def vm_lock(ctx: Context, vmid: int, lock: str) -> str:
    """Why a VM is locked: a task still running (Proxmox lists a clone under its source, and the clone's target
    carries lock `clone`), or a dead one's lock, with the fix that removes it (`qm unlock` on a real node)."""
    from ..lxc import explain_lock

    if lock == "clone":
        tasks = ctx.pve().get(f"nodes/{ctx.node}/tasks", source="active")
        clones = [t for t in tasks if t.get("type") == "qmclone" and (t.get("status") == "running" or not t.get("endtime"))]
        if clones:
            return (f"VM {vmid} is locked (clone) by a clone still running on the node: {clones[0].get('upid')} "
                    f"(Proxmox lists a clone under its source, VM {clones[0].get('id')}). Wait for it to end, then rerun.")
    return explain_lock(ctx, vmid, lock).replace("CT ", "VM ").replace("`pct unlock", "`qm unlock")


class VmKind:
    name = R.KIND
    plan_checks = False  # the checks render snippets with their secrets and read the node: `doit plan --steps`

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
        config = ctx.pve().get(f"nodes/{node}/qemu/{res.vmid}/config")
        return F.parse_record(config.get("description"))

    def prepare(self, res: Resource, decision: Decision, ctx: Context) -> Prepared:
        """Read and check what the build needs before a write: the storages (snippets, import), the cloud image,
        the rendered cloud-init files (with their secrets), the node's SSH, and the guests it replaces."""
        from ...cloudinit.write import render_checked
        from ...config.vm import parent_of
        from ...secrets import read_secret
        from ..base import Prepared
        from ..bridges import problems as bridge_problems
        from ..ha import refused as ha_refused
        from . import checks
        from . import steps as S

        vmid = res.vmid
        assert vmid is not None
        estate = ctx.estate
        vm, hyp = estate.vms[vmid], estate.hypervisor
        problems: list[str] = []
        facts = ctx.view.get(vmid)
        if decision.action == Action.UPDATE:
            assert facts is not None
            config = ctx.pve().get(S.qemu(ctx.node, vmid, "/config"))
            if config.get("lock"):  # a copy's vzdump would fail on it too, after the old copy is gone
                problems.append(vm_lock(ctx, vmid, str(config["lock"])))
            if decision.why != Why.COPIES:
                problems += bridge_problems(ctx, f"VM {vmid} ({res.key})", res.settings["net0"], config.get("net0"))
            plans, found = layer_copies(ctx, res, decision)
            return Prepared({"config": config, "facts": facts, "copies": plans}, tuple(problems + found))
        from ..host.storage import as_set_up, pending

        storages = as_set_up(estate, ctx.once("storage config", lambda: ctx.pve().get("storage")), pending(ctx))
        i_storage = (hyp.cloud_images[vm.cloud_image].volume.split(":", 1)[0]
                     if vm.cloud_image is not None and decision.artifact is None else None)
        needs = {hyp.storage.snippets: {"snippets"}}
        if i_storage is not None:
            needs.setdefault(i_storage, set()).add("import")
        directory, found = checks.snippets_dir(storages, hyp.storage.snippets, frozenset(needs[hyp.storage.snippets]))
        problems += found
        parent = parent_of(estate.vms, vmid)
        linked = parent is not None and estate.vms[parent].convert_to_template
        if not linked:  # a linked clone's disk stays on its template's storage (vmcheck refuses another one)
            problems += checks.boot_storage_problems(storages, R.storage(estate, vmid), ctx.node, f"VM {vmid}")
        problems += bridge_problems(ctx, f"VM {vmid} ({res.key})", res.settings["net0"])
        if not found:  # what the bake will write the snippets with, tried before anything is destroyed
            try:
                ctx.once(f"snippets {directory}", lambda: ctx.transport().check_writable(directory))
            except PhoenixError as e:
                problems.append(f"VM {vmid}: cannot write its cloud-init snippets into {directory} (storage "
                                f"{hyp.storage.snippets}) on node {ctx.node}: {e}")
        if decision.artifact is not None:
            from ..lxc.checks import backup_storage_problems

            problems += backup_storage_problems(estate, storages)
        try:
            ctx.once("node check", lambda: ctx.transport().check())
        except PhoenixError as e:
            problems.append(str(e))
        files: dict[str, bytes] = {}
        try:
            rendered = render_checked(estate, vmid, instance_id="pending", read=read_secret)
            files = {name: rendered.files[name].encode() for name in ("user-data", "network-config")}
        except PhoenixError as e:
            problems.append(str(e))
        download = False
        if vm.cloud_image is not None and decision.artifact is None:  # a restore needs no cloud image
            image = hyp.cloud_images[vm.cloud_image]
            i_storage = image.volume.split(":", 1)[0]
            problems += checks.content_problem(storages, i_storage, "import", f"cloud image {image.volume}",
                                               frozenset(needs[i_storage]))
            content = ctx.once(f"content {i_storage} import",
                               lambda: ctx.pve().get(f"nodes/{ctx.node}/storage/{i_storage}/content", content="import"))
            if not any(item.get("volid") == image.volume for item in content):
                if not image.url:
                    problems.append(f"cloud image {image.volume} is not in storage {i_storage} and has no url to fetch "
                                    "it from: set cloud_images.*.url in the hypervisor config")
                else:  # the node will fetch it: ask the node whether it can, before anything is destroyed
                    url = image.url
                    try:
                        ctx.once(f"url {url}", lambda: ctx.pve().get(f"nodes/{ctx.node}/query-url-metadata", url=url))
                    except PhoenixError as e:
                        problems.append(f"VM {vmid}: cloud image {image.volume} is not in storage {i_storage}, and node "
                                        f"{ctx.node} cannot fetch it from {url}: {e}")
                download = True
        parent = parent_of(estate.vms, vmid)
        source = None
        if parent is not None and parent in estate.vms:
            source, found = cross_member_source(ctx, res, parent)
            problems += found
        pf = ctx.view.get(parent) if parent is not None else None
        if source is not None and source.copy:  # cloned from the parent's copy on this member
            pf = ctx.view.get(source.vmid)
        if parent is not None and pf is not None:  # a clone of a locked source fails after the destroy: refuse first
            lock = ctx.pve().get(S.qemu(pf.node or ctx.node, pf.vmid, "/config")).get("lock")
            if lock:
                problems.append(f"its parent {vm_lock(ctx, pf.vmid, str(lock))}")
        replaced: list[S.Replaced] = []
        keep: tuple[str, ...] = ()
        if facts is not None:
            on_host = [vmid]
            if vm.convert_to_template:  # linked clones hold the template's base disk: they go first
                kids = [v for v in estate.vms if parent_of(estate.vms, v) == vmid]
                on_host = [v for v in kids if ctx.view.get(v) is not None] + on_host
            for v in on_host:
                f = ctx.view.get(v)
                assert f is not None
                if not f.managed:
                    problems.append(f"VM {v} is not Phoenix's (no 'phoenix' tag and record): refusing to destroy it")
                    continue
                on = f.node or ctx.node   # destroyed where it is (a rebuild may place it elsewhere)
                config = ctx.pve().get(S.qemu(on, v, "/config"))
                problems += ha_refused("qemu", v, f"virtual_machines[{estate.vms[v].index}] (vm_id {v})"
                                       if v in estate.vms else f"VM {v}", f,
                                       v in estate.vms and "ha" in R.in_place_settings(estate, v))
                if config.get("protection") and not ctx.allow_protected(v):
                    problems.append(f"VM {v} has protection set, and rebuilding it would destroy it: clear it "
                                    f"(qm set {v} --protection 0) or allow it for this run")
                if config.get("lock"):
                    problems.append(vm_lock(ctx, v, str(config["lock"])))
                replaced.append(S.Replaced(v, config, f.status == "running", on, f.hastate is not None))
                if v == vmid:  # tags set by hand stay: those Phoenix did not set last time
                    old = F.parse_record(config.get("description")).get("settings")
                    ours = set((old or {}).get("tags") or ()) if isinstance(old, dict) else set()
                    keep = tuple(t for t in f.user_tags if t not in ours and t not in vm.tags)
        if vm.ha and vm.is_template_layer:
            problems.append(f"VM {vmid} is a layer other VMs are cloned from, not a service for HA to keep running: "
                            "remove ha from it (its clones may have it)")
        plans, found = layer_copies(ctx, res, decision, {r.vmid for r in replaced})
        problems += found
        # snippets of a VMID that is neither a VM on the host nor one of the config are no VM's: the bake removes them
        vms_on_host = {v for v, f in ctx.view.guests().items() if f.kind == "qemu"}
        keep_vmids = tuple(sorted(vms_on_host | set(estate.vms)))
        return Prepared({"replaced": tuple(replaced), "download": download, "dir": directory, "files": files,
                         "keep": keep, "keep_vmids": keep_vmids, "source": source, "copies": plans}, tuple(problems))

    def steps(self, res: Resource, decision: Decision, prepared: Prepared, ctx: Context, *,
              build_id: str, parent_build: str | None, identity: str | None = None) -> list[Step]:
        from ...cloudinit import render as CR
        from . import steps as S

        data = prepared.data
        if decision.why == Why.STOPPED:
            from ..running import start

            return [start(S.qemu(ctx.node, res.vmid or 0), res.vmid or 0)]
        if decision.action == Action.UPDATE:
            facts = data["facts"]
            out = [] if decision.why == Why.COPIES else \
                S.update(ctx.estate, res, ctx.node, facts, data["config"], "; ".join(decision.reasons))
            return out + S.copies(ctx.estate, res, ctx.node, data["copies"], facts.identity or "", facts.build_id or "",
                                  parent_build, ctx.owner, facts.status == "running")
        vmid = res.vmid
        assert vmid is not None
        running = not ctx.estate.vms[vmid].is_template_layer   # how the bake leaves it (a copy dumps it so)
        directory = CR.templates_dir(ctx.estate.library.root)
        meta_path = CR.template_paths(directory, vmid)["meta-data"]
        m = decision.artifact
        if m is not None and ctx.artifacts is not None:  # restored: the archive's identity and build ids
            values = {**CR.variables(ctx.estate, vmid), "instance_id": f"phx-{vmid}-{m.build}"}
            meta = CR.render_file(directory, meta_path, vmid, values).encode()
            bake = S.Bake(m.identity, m.build, m.parent_build, ctx.owner, data["replaced"], False, data["dir"],
                          data["files"], meta, data["keep"], data["keep_vmids"])
            return S.restore(ctx.estate, res, ctx.node, bake, ctx.artifacts / m.archive, m) + \
                S.copies(ctx.estate, res, ctx.node, data["copies"], m.identity, m.build, m.parent_build, ctx.owner,
                         running)
        values = {**CR.variables(ctx.estate, vmid), "instance_id": f"phx-{vmid}-{build_id}"}
        meta = CR.render_file(directory, meta_path, vmid, values).encode()
        bake = S.Bake(identity or res.identity(parent_build), build_id, parent_build, ctx.owner, data["replaced"],
                      data["download"], data["dir"], data["files"], meta, data["keep"], data["keep_vmids"],
                      data.get("source"))
        return S.bake(ctx.estate, res, ctx.node, bake) + \
            S.copies(ctx.estate, res, ctx.node, data["copies"], bake.identity, build_id, parent_build, ctx.owner, running)


def layer_copies(ctx: Context, res: Resource, decision: Decision, destroyed: set[int] | frozenset[int] = frozenset()
                 ) -> tuple[list[Any], list[str]]:
    """The copies of this layer the decision makes on other members (kinds.members.copy_plans), checked now."""
    if not decision.copies:
        return [], []
    from ..members import copy_plans

    assert res.vmid is not None
    return copy_plans(ctx, res, decision.copies, R.storage(ctx.estate, res.vmid),
                      ctx.estate.vms[res.vmid].convert_to_template, destroyed)


def cross_member_source(ctx: Context, res: Resource, parent: int) -> tuple[Any, list[str]]:
    """Where a VM placed on another member than its parent is cloned from (kinds.members.clone_source): across with
    `target` when the parent's disk and its own are on shared storage and the clone is a full one (qemu-server's
    clone_vm refuses a VM on local storage, or onto non-shared storage, on another node; Phoenix makes no linked clone
    across members); otherwise from the parent's copy on this member, which the parent's build makes. Refused only
    when no copy can be made (its VMID or node id), with the two ways out."""
    from ..members import clone_source

    assert res.vmid is not None
    estate = ctx.estate
    try:
        return clone_source(ctx, res, parent, R.storage(estate, parent), R.storage(estate, res.vmid),
                            linked=estate.vms[parent].convert_to_template), []
    except PhoenixError as e:
        placed = ctx.placed(res.parent) if res.parent else None
        where = f" is on {placed.node}" if placed is not None and placed.node else " is elsewhere"
        return None, [f"VM {res.vmid} is placed on {ctx.node} and its parent VM {parent}{where}, but it cannot be "
                      f"copied here: {e}. Set node on VM {res.vmid} to its parent's, or put both boot disks on a shared "
                      "storage (boot_disk_storage, e.g. ceph) with a snapshot-template parent (template_snapshot_name)"]


VM = VmKind()

__all__ = ["VM", "VmKind"]
