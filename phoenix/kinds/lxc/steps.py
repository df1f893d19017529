"""The steps of a container layer's bake, update and destroy, as data (pure).

A bake: destroy what it replaces (linked clones first), create from the OS template or clone from the parent,
configure, grow the disk, root-only settings, start, run the scripts, remove the secrets of a template layer,
stop, snapshot or make a template, and last the record: only then is the layer built.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...cluster.copies import Source
from ...facts import guests as F
from ...resources import Resource
from ...steps import (
    Call,
    Forget,
    MakeDirs,
    NodeSet,
    RemoveNodeFile,
    RemoveSecrets,
    RestartIfPending,
    Script,
    SendFile,
    SetFacts,
    Step,
    download,
)
from .. import ha, running
from . import params as P
from .context import build_context
from .datafiles import feature_files
from .rules import GIB, ID_MAP_BASE, MIB, recorded

if TYPE_CHECKING:
    from ...config.estate import Estate
    from ...facts.node import NodeFacts


def lxc(node: str, ctid: int, suffix: str = "") -> str:
    return f"nodes/{node}/lxc/{ctid}{suffix}"


@dataclass(frozen=True)
class Replaced:
    """A guest a bake destroys, as the host has it now."""

    vmid: int
    config: dict[str, Any]
    running: bool
    node: str | None = None        # the member it is on (None: the build's)
    ha: bool = False               # under HA: taken out first


@dataclass(frozen=True)
class Bake:
    """What a bake needs beyond the config: read from the host (or new) when the run gets to it."""

    identity: str
    build_id: str
    parent_build: str | None
    owner: str | None = None                         # the run's id, in phx-run- while it builds
    replaced: tuple[Replaced, ...] = ()              # destroyed first, in this order
    download: bool = False                           # the OS template is not in its storage yet
    devices: dict[str, str] = field(default_factory=dict)  # devN entries for the GPUs
    node_facts: NodeFacts | None = None
    keep_tags: tuple[str, ...] = ()                  # set by hand on the guest it replaces
    keep_protection: bool = False                    # set by hand on the guest it replaces
    make_dirs: tuple[str, ...] = ()                  # bind-mounted host directories to create first
    give_dirs: tuple[str, ...] = ()                  # empty ones owned outside the container's id map: given to its root
    source: Source | None = None                     # where a clone comes from (None: its parent, on this node)


def destroy(node: str, r: Replaced, why: str) -> list[Step]:
    out: list[Step] = [ha.remove("lxc", r.vmid, why)] if r.ha else []
    path = lxc(r.node or node, r.vmid)
    if r.config.get("protection"):
        out.append(Call(f"destroy CT {r.vmid} ({why}): clear protection", "PUT", f"{path}/config", {"protection": 0},
                        idempotent=True))
    if r.running:
        out.append(Call(f"destroy CT {r.vmid} ({why}): stop", "POST", f"{path}/status/stop", idempotent=True))
    out.append(Call(f"destroy CT {r.vmid} ({why})", "DELETE", path, {"purge": 1}, then=Forget(r.vmid)))
    return out


def make_dirs(g: Any, paths: tuple[str, ...], give: tuple[str, ...] = ()) -> list[Step]:
    """Create the missing host directories the config says to create, owned by the container's root; give the empty
    ones owned outside an unprivileged container's id map to its root."""
    owner = ID_MAP_BASE if g.unprivileged else None  # the container's root on the host
    give = give if owner is not None else ()
    if not paths and not give:
        return []
    what = [f"create host directories {', '.join(paths)}"] if paths else []
    what += [f"give empty host directories {', '.join(give)} to {owner}:{owner}"] if give else []
    return [MakeDirs("; ".join(what), tuple(paths), owner, tuple(give))]


def scripts(estate: Estate, res: Resource, node_facts: NodeFacts | None) -> list[Step]:
    ctid = res.vmid
    assert ctid is not None
    g, lib = estate.guests[ctid], estate.library
    found = [(f"feature {n}", f"{n}.sh", lib.feature(n), tuple(feature_files(estate, ctid, n).items()))
             for n in g.features]
    if g.application_script:
        found.append((f"app {g.application_script}", g.application_script, lib.app(g.application_script), ()))
    if not found:
        return []
    context = build_context(estate, ctid, node_facts)
    timeout = g.feature_timeout_s or estate.hypervisor.behavior.feature_timeout_s
    return [Script(label, ctid, res.key, name, script.path, lib.lib_path, context,
                   (*script.secrets, *script.optional_secrets), script.secrets, timeout, files)
            for label, name, script, files in found]


def record(res: Resource, identity: str, build_id: str, parent_build: str | None) -> dict[str, Any]:
    """The record a built layer keeps in its description: what it was built from."""
    return {"layer": res.key, "identity": identity, "build": build_id, "parent_build": parent_build,
            "inputs": res.inputs, "settings": recorded(res.settings), "built_at": int(time.time())}


def bake(estate: Estate, res: Resource, node: str, b: Bake) -> list[Step]:
    """Every step of a bake, in order."""
    ctid = res.vmid
    assert ctid is not None
    g, hyp = estate.guests[ctid], estate.hypervisor
    out: list[Step] = []
    if g.clone_from_ctid is None and b.download:
        # before any destroy: a download that fails (network, checksum, a full storage) leaves the old layer standing
        out.append(download(node, estate.os_template(ctid), "vztmpl"))
    out += make_dirs(g, b.make_dirs, b.give_dirs)  # the node's directories too: a failing mkdir destroys nothing
    for r in b.replaced:
        out += destroy(node, r, "was built from other inputs" if r.vmid == ctid else f"a linked clone of ct{ctid}")
    user_tags = [*g.tags, *b.keep_tags]
    building = F.building_tags(user_tags, b.owner)
    temp_desc = F.description(g.description, {"layer": res.key, "state": "building"})
    settings, storage = res.settings, estate.storage(ctid)
    started = SetFacts(ctid, building, {"name": g.name, "node": node}, new=True)
    if g.clone_from_ctid is None:
        volume = estate.os_template(ctid)
        out.append(Call(f"create from {volume.volume}", "POST", f"nodes/{node}/lxc",
                        P.create_params(ctid, settings, ostemplate=volume.volume, storage=storage,
                                        unprivileged=g.unprivileged, tags=building, description=temp_desc),
                        then=started))
    else:
        parent = estate.guests[g.clone_from_ctid]
        linked = parent.convert_to_template
        snap = None if linked else parent.template_snapshot_name
        what = f"linked clone of template ct{g.clone_from_ctid}" if linked else f"clone from ct{g.clone_from_ctid}@{snap}"
        src = b.source or Source(node, g.clone_from_ctid)
        params = P.clone_params(ctid, g.name, snapname=snap, linked=linked, storage=storage, description=temp_desc)
        if src.copy:
            what += f" (its copy CT {src.vmid} on {src.node})"
        elif src.target:
            params["target"] = src.target
            what += f" on {src.node} to {src.target}"
        out.append(Call(what, "POST", lxc(src.node, src.vmid, "/clone"), params,
                        retry_locked=True, clone=True, then=started))
        out.append(Call("configure", "PUT", lxc(node, ctid, "/config"),
                        P.building_params(settings, tags=building, description=temp_desc, unprivileged=g.unprivileged),
                        idempotent=True))
        if settings["rootfs_gb"] > parent.storage_size_gb:
            out.append(Call(f"grow rootfs {parent.storage_size_gb} -> {settings['rootfs_gb']} GB", "PUT",
                            lxc(node, ctid, "/resize"), {"disk": "rootfs", "size": f"{settings['rootfs_gb']}G"},
                            idempotent=True))
    options = P.root_options(settings, b.devices, g.unprivileged)
    if options:
        out.append(NodeSet(f"pct set (root only: {', '.join(sorted(options))})", ctid, options))
    out.append(Call("start", "POST", lxc(node, ctid, "/status/start"), idempotent=True))
    out += scripts(estate, res, b.node_facts)
    template_layer = g.is_template_layer or g.convert_to_template
    if template_layer and any(isinstance(s, Script) and s.secrets for s in out):
        out.append(RemoveSecrets("remove secrets (clones must not inherit them)", ctid))
    stopped = (g.is_template_layer and hyp.behavior.stop_templates_after_build) or g.convert_to_template
    if stopped:
        out.append(Call("stop", "POST", lxc(node, ctid, "/status/shutdown"), {"forceStop": 1}, idempotent=True))
    return out + finish(estate, res, node, b, user_tags, stopped)


def finish(estate: Estate, res: Resource, node: str, b: Bake, user_tags: list[str], stopped: bool,
           restored_from: str | None = None) -> list[Step]:
    """The end of a bake or a restore: snapshot, template, and last the record (then the layer is built). A restored
    template is one already: Proxmox converts a container restored from a template's archive back into a template."""
    ctid = res.vmid
    assert ctid is not None
    g, settings = estate.guests[ctid], res.settings
    out: list[Step] = []
    if g.template_snapshot_name:
        out.append(Call(f"snapshot {g.template_snapshot_name}", "POST", lxc(node, ctid, "/snapshot"),
                        {"snapname": g.template_snapshot_name, "description": f"Phoenix layer {res.key}, build {b.build_id}"}))
    if g.convert_to_template and restored_from is None:
        out.append(Call("convert to template", "POST", lxc(node, ctid, "/template")))
    tags = F.record_tags(user_tags, b.identity, b.build_id, res.settings_hash)
    rec = record(res, b.identity, b.build_id, b.parent_build)
    if restored_from is not None:
        rec["restored_from"] = restored_from
    put = P.record_params(settings, tags=tags, description=F.description(g.description, rec))
    if b.keep_protection:
        put["protection"] = 1
    out.append(Call("record layer identity", "PUT", lxc(node, ctid, "/config"), put, idempotent=True, records=True,
                    then=SetFacts(ctid, tags, {"name": g.name, "maxmem": g.memory_mb * MIB, "maxcpu": g.cores,
                                               "maxdisk": g.storage_size_gb * GIB, "template": g.convert_to_template,
                                               "status": "stopped" if stopped else "running"})))
    return out + ha.after_build("lxc", ctid, settings.get("ha"), tags)


def copies(estate: Estate, res: Resource, node: str, plans: list[Any], identity: str, build_id: str,
           parent_build: str | None, owner: str | None, running: bool) -> list[Step]:
    """The layer copied to each member its children there clone it on (kinds.members.CopyPlan): restored under the
    copy's VMID with the layer's record and a phx-copy-<vmid> tag, so the copy's children compute their identities
    from the layer's build."""
    from ..members import copy_steps

    g = estate.guests[res.vmid or 0]
    return list(copy_steps(res, "lxc", "CT", node, plans, user_tags=list(g.tags), description=g.description,
                           record=record(res, identity, build_id, parent_build), identity=identity,
                           build_id=build_id, owner=owner, restore={"storage": estate.storage(res.vmid or 0),
                                                                    "hostname": g.name,
                                                                    "unprivileged": int(g.unprivileged)},
                           snapshot=g.template_snapshot_name, running=running, artifacts=estate.hypervisor.artifacts))


def backup_volume(vmid: int, m: Any, kind: str = "lxc") -> str:
    """The archive's file name on the node's backup storage, as vzdump names one (PVE reads the guest type and time):
    kind 'lxc' or 'qemu'."""
    stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.gmtime(m.created))
    return f"vzdump-{kind}-{vmid}-{stamp}.{m.archive.split('.', 1)[1]}"


def restore(estate: Estate, res: Resource, node: str, b: Bake, archive: Path, m: Any) -> list[Step]:
    """A bake replaced by a restore from the artifact store: the archive copied into the node's backup storage, the
    container restored from it (POST /nodes/{node}/lxc restore=1, the config's settings given), the archive removed,
    then root-only settings, started if the layer runs, and snapshot, template and record as a bake makes them, with the
    archive's identity and build ids (so its children's identities are those of their archives)."""
    ctid = res.vmid
    assert ctid is not None
    g, hyp = estate.guests[ctid], estate.hypervisor
    out: list[Step] = []
    user_tags = [*g.tags, *b.keep_tags]
    building = F.building_tags(user_tags, b.owner)
    temp_desc = F.description(g.description, {"layer": res.key, "state": "building"})
    volname = backup_volume(ctid, m)
    dump_dir = hyp.artifacts.node_dump_dir.rstrip("/")
    on_node = f"{dump_dir}/{volname}"
    out.append(MakeDirs(f"create {dump_dir} on the node if missing", (dump_dir,)))
    out.append(SendFile(f"copy artifact {m.archive} to the node", archive, on_node, m.sha256))
    out += make_dirs(g, b.make_dirs, b.give_dirs)
    # the old layer goes only now, the archive on the node: a copy that fails leaves it standing
    for r in b.replaced:
        out += destroy(node, r, "was built from other inputs" if r.vmid == ctid else f"a linked clone of ct{ctid}")
    params = P.create_params(ctid, res.settings, ostemplate=f"{hyp.artifacts.backup_storage}:backup/{volname}",
                             storage=estate.storage(ctid), unprivileged=g.unprivileged, tags=building, description=temp_desc)
    params["restore"] = 1
    out.append(Call(f"restore from artifact {m.archive}", "POST", f"nodes/{node}/lxc", params,
                    then=SetFacts(ctid, building, {"name": g.name, "node": node}, new=True)))
    out.append(RemoveNodeFile("remove the archive from the node", on_node))
    options = P.root_options(res.settings, b.devices, g.unprivileged)
    if options:
        out.append(NodeSet(f"pct set (root only: {', '.join(sorted(options))})", ctid, options))
    stopped = (g.is_template_layer and hyp.behavior.stop_templates_after_build) or g.convert_to_template
    if not stopped:
        out.append(Call("start", "POST", lxc(node, ctid, "/status/start"), idempotent=True))
    return out + finish(estate, res, node, b, user_tags, stopped, restored_from=m.archive)


def migrate(node: str, ctid: int, target: str, running: bool) -> Call:
    """Move the container to another member (PVE's restart mode for a running one: stopped, moved, started)."""
    params: dict[str, Any] = {"target": target, **({"restart": 1} if running else {})}
    return Call(f"move to {target} (the config places it there)", "POST", lxc(node, ctid, "/migrate"), params,
                then=SetFacts(ctid, "", {"node": target}, keep_tags=True))


def update(estate: Estate, res: Resource, node: str, facts: F.GuestFacts, config: dict[str, Any], reasons: str,
           dirs: tuple[str, ...] = (), give: tuple[str, ...] = ()) -> list[Step]:
    """Change settings in place: one config PUT (plus root-only settings); a restart only if Proxmox needs one. A
    guest the config places on another member is moved there first."""
    ctid = res.vmid
    assert ctid is not None
    g, settings = estate.guests[ctid], res.settings
    target = settings.get("node")
    moving: list[Step] = []
    if target and facts.node and target != facts.node:
        moving.append(migrate(node, ctid, target, facts.status == "running"))
        node = target
    rec = F.parse_record(config.get("description"))
    old = rec.get("settings")
    if not isinstance(old, dict) or not set(settings) <= set(old):
        old = None  # no record, or one from another Phoenix: every root-only setting is applied again
    rec["settings"] = recorded(settings)
    hand = hand_set(facts, old, int(config.get("protection") or 0))
    tags = F.record_tags([*g.tags, *hand.tags], facts.identity or "", facts.build_id or "", res.settings_hash)
    put = P.config_params(settings, tags=tags, description=F.description(g.description, rec), unprivileged=g.unprivileged)
    if put.get("delete") == "features" and "features" not in config:
        put.pop("delete")
    if hand.protection and not settings["protection"]:
        put["protection"] = 1
    out: list[Step] = [Call(f"update in place ({reasons or 'settings'})", "PUT", lxc(node, ctid, "/config"), put,
                            idempotent=True,
                            then=SetFacts(ctid, tags, {"maxmem": g.memory_mb * MIB, "maxcpu": g.cores,
                                                       "maxdisk": max(facts.maxdisk, g.storage_size_gb * GIB)}))]
    current_gb = facts.maxdisk // GIB if facts.maxdisk else None
    if current_gb and settings["rootfs_gb"] > current_gb:
        out.append(Call(f"grow rootfs {current_gb} -> {settings['rootfs_gb']} GB", "PUT", lxc(node, ctid, "/resize"),
                        {"disk": "rootfs", "size": f"{settings['rootfs_gb']}G"}, idempotent=True))
    out += make_dirs(g, dirs, give)
    before = P.root_options(old, {}, g.unprivileged) if old else {}
    after = P.root_options(settings, {}, g.unprivileged)
    wanted = {k: v for k, v in after.items() if before.get(k) != v}
    gone = sorted(set(before) - set(after))
    if gone:
        wanted["delete"] = ",".join(gone)
    if wanted:
        out.append(NodeSet(f"pct set (root only: {', '.join(sorted(wanted))})", ctid, wanted))
    if facts.status == "running":
        out.append(RestartIfPending("restart", lxc(node, ctid), tuple(sorted(wanted))))
    elif running.stopped_by_hand(res, facts):
        out.append(running.start(lxc(node, ctid), ctid))
    want_ha, had_ha = settings.get("ha"), (old or {}).get("ha")
    if want_ha and (ha.state_change(want_ha, facts) or (old is not None and had_ha != want_ha)):
        out.append(ha.put("lxc", ctid, want_ha, facts, tags))
    elif not want_ha and had_ha and facts.hastate is not None:  # Phoenix put it under HA; the config no longer says so
        out.append(Call(f"remove {ha.sid('lxc', ctid)} from HA (no longer in the config)", "DELETE",
                        f"cluster/ha/resources/{ha.sid('lxc', ctid)}",
                        then=SetFacts(ctid, tags, {"hastate": None}, keep_tags=True)))
    return moving + out


@dataclass(frozen=True)
class HandSet:
    """What a person set on a guest by hand, which Phoenix keeps: tags it never set, protection it never asked for."""

    tags: tuple[str, ...] = ()
    protection: bool = False


def hand_set(facts: F.GuestFacts | None, old_settings: dict[str, Any] | None, protection: int = 0) -> HandSet:
    """From the guest's tags and protection, and the settings Phoenix last applied (the record's)."""
    if facts is None:
        return HandSet()
    ours = set((old_settings or {}).get("tags") or ())
    tags = tuple(sorted(t for t in facts.user_tags if t not in ours))
    was = int((old_settings or {}).get("protection") or 0)
    return HandSet(tags, bool(protection) and not was)
