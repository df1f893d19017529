"""The steps of a VM layer's bake, update and destroy, as data (pure).

A bake: fetch the cloud image if it is missing, destroy what it replaces (linked clones first), write the
cloud-init snippets (named by content), create the root from the image (`scsi0=<storage>:0,import-from=…`, a
cloud-init drive, the agent, a serial console) or clone the parent, grow the disk, start, wait for the agent and
for cloud-init, run the features through the agent, stop and snapshot or make a template, and last the record.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...context import to_env, to_json
from ...facts import guests as F
from ...resources import Resource
from ...secrets import SECRET_NAMES
from ...steps import (
    AgentRun,
    AgentWait,
    Call,
    Forget,
    MakeDirs,
    PutSnippets,
    RemoveNodeFile,
    RestartIfPending,
    SendFile,
    SetFacts,
    Step,
    download,
)
from .. import ha, running
from ..lxc.rules import GIB, MIB, recorded

if TYPE_CHECKING:
    from ...config.estate import Estate

GUEST_DIR = "/var/lib/phoenix"          # the context, the library and the scripts go here in a VM
SECRETS_DIR = f"{GUEST_DIR}/secrets"    # 0700; each secret a 0600 file (removed before a golden image is kept)
AGENT_TIMEOUT_S = 600.0
CLOUD_INIT_TIMEOUT_S = 1800.0
SNIPPET_KEYS = {"user-data": "user", "network-config": "network", "meta-data": "meta"}


def qemu(node: str, vmid: int, suffix: str = "") -> str:
    return f"nodes/{node}/qemu/{vmid}{suffix}"


@dataclass(frozen=True)
class Replaced:
    vmid: int
    config: dict[str, Any]
    running: bool
    node: str | None = None              # the member it is on (None: the build's)
    ha: bool = False                     # under HA: taken out first


@dataclass(frozen=True)
class Bake:
    identity: str
    build_id: str
    parent_build: str | None
    owner: str | None
    replaced: tuple[Replaced, ...]
    download: bool                       # the cloud image is not in its storage yet
    snippets_dir: str                    # <path of the snippets storage>/snippets on the node
    files: dict[str, bytes]              # user-data and network-config as rendered (with secrets)
    meta_data: bytes                     # meta-data, rendered with this build's instance-id
    keep_tags: tuple[str, ...] = ()
    keep_vmids: tuple[int, ...] = ()     # VMs on the host or in the config: their snippets stay
    source: Any = None                   # cluster.copies.Source: the parent on another member (target), or its copy here


def snippet_names(vmid: int, files: dict[str, bytes]) -> dict[str, str]:
    """cloud-init file -> snippet file name, by content: phoenix-1001-user-3f2a9c1d0b7e.yml."""
    return {name: f"phoenix-{vmid}-{SNIPPET_KEYS[name]}-{hashlib.sha256(data).hexdigest()[:12]}.yml"
            for name, data in files.items()}


def cicustom(storage: str, names: dict[str, str]) -> str:
    return ",".join(f"{SNIPPET_KEYS[f]}={storage}:snippets/{names[f]}" for f in ("user-data", "network-config",
                                                                                  "meta-data"))


def destroy(node: str, r: Replaced, why: str) -> list[Step]:
    out: list[Step] = [ha.remove("qemu", r.vmid, why)] if r.ha else []
    path = qemu(r.node or node, r.vmid)
    if r.config.get("protection"):
        out.append(Call(f"destroy VM {r.vmid} ({why}): clear protection", "PUT", f"{path}/config", {"protection": 0},
                        idempotent=True))
    if r.running:
        out.append(Call(f"destroy VM {r.vmid} ({why}): stop", "POST", f"{path}/status/stop", idempotent=True))
    out.append(Call(f"destroy VM {r.vmid} ({why})", "DELETE", path, {"purge": 1, "destroy-unreferenced-disks": 1},
                    then=Forget(r.vmid)))
    return out


def context(estate: Estate, vmid: int) -> dict[str, Any]:
    """What feature scripts read in a VM (no secret values): the same keys as a container's where they apply."""
    from ...config.vm import parent_of

    vm, hyp = estate.vms[vmid], estate.hypervisor
    chain: list[int] = []
    cur: int | None = vmid
    while cur is not None and cur in estate.vms:
        chain.append(cur)
        cur = parent_of(estate.vms, cur)
    features: list[str] = []
    for v in reversed(chain):
        features += [f for f in estate.vms[v].features if f not in features]
    net = vm.network_config
    user = vm.user_config
    return {"guest_kind": "vm", "vmid": vmid, "name": vm.vm_name, "features": features, "timezone": hyp.timezone,
            "locale": "en_US.UTF-8", "extra_packages": [], "unattended_upgrades": False,
            "user": {"username": user.username, "ssh_public_key": user.ssh_public_key, "sudo": user.sudo} if user else None,
            "network": {"ip": str(net.ip) if net else "dhcp",
                        "gateway": str(net.gw or hyp.network.gateway or "") if net else ""},
            "gpus": [], "gpu_count": 0, "docker": {"user": user.username if user else None, "nvidia_toolkit": False},
            "secrets": [s for s in SECRET_NAMES if hyp.secrets.file(s)]}


def feature_runs(estate: Estate, res: Resource, node: str) -> list[Step]:
    vmid = res.vmid
    assert vmid is not None
    vm, lib = estate.vms[vmid], estate.library
    if not vm.features:
        return []
    ctx = context(estate, vmid)
    timeout = vm.feature_timeout_s or estate.hypervisor.behavior.feature_timeout_s
    base = (f"{GUEST_DIR}/context.json", 0o644, to_json(ctx).encode()), \
        (f"{GUEST_DIR}/context.env", 0o644, to_env(ctx).encode()), \
        (f"{GUEST_DIR}/lib/phoenix-common.sh", 0o644, lib.lib_path.read_bytes())
    out: list[Step] = [AgentRun("prepare /var/lib/phoenix", node, vmid, res.key,
                                ("mkdir", "-p", "-m", "0755", f"{GUEST_DIR}/lib", f"{GUEST_DIR}/run"), timeout=60)]
    for i, name in enumerate(vm.features):
        script = lib.feature(name)
        files = ((*base, (f"{GUEST_DIR}/run/{name}.sh", 0o755, script.path.read_bytes())) if i == 0 else
                 ((f"{GUEST_DIR}/run/{name}.sh", 0o755, script.path.read_bytes()),))
        out.append(AgentRun(f"feature {name}", node, vmid, res.key,
                            ("/usr/bin/env", f"PHOENIX_CONTEXT={GUEST_DIR}/context.json",
                             f"PHOENIX_ENV={GUEST_DIR}/context.env", f"PHOENIX_LIB={GUEST_DIR}/lib/phoenix-common.sh",
                             f"PHOENIX_SECRETS={SECRETS_DIR}", "/bin/bash", f"{GUEST_DIR}/run/{name}.sh"), files, timeout,
                            secrets=(*script.secrets, *script.optional_secrets), required=script.secrets,
                            secrets_dir=SECRETS_DIR))
    if vm.is_template_layer and any(isinstance(s, AgentRun) and s.secrets for s in out):
        out.append(AgentRun("remove secrets (clones must not inherit them)", node, vmid, res.key,
                            ("rm", "-rf", "--", SECRETS_DIR), timeout=60))
    return out


def record(res: Resource, identity: str, build_id: str, parent_build: str | None,
           snippets: dict[str, str]) -> dict[str, Any]:
    return {"layer": res.key, "identity": identity, "build": build_id, "parent_build": parent_build,
            "inputs": res.inputs, "settings": recorded(res.settings), "snippets": sorted(snippets.values()),
            "built_at": int(time.time())}


@dataclass(frozen=True)
class Start:
    """How a bake or a restore begins: its first steps (what it replaces destroyed, then the layer's cloud-init
    snippets written), and the tags, description and snippet names the guest carries while it is built."""

    steps: list[Step]
    user_tags: list[str]
    building: str
    description: str
    names: dict[str, str]


def begin(estate: Estate, res: Resource, node: str, b: Bake) -> Start:
    """The first steps of a bake or a restore. The snippets are named by content: a bake and a restore write the same
    names, so a restored VM's cicustom points at what its archive's VM had."""
    vmid = res.vmid
    assert vmid is not None
    vm = estate.vms[vmid]
    out: list[Step] = []
    user_tags = [*vm.tags, *b.keep_tags]
    files = {**b.files, "meta-data": b.meta_data}
    names = snippet_names(vmid, files)
    storage, written = estate.hypervisor.storage.snippets, {names[f]: data for f, data in files.items()}
    what = f"write cloud-init snippets ({', '.join(sorted(names.values()))})"
    if not b.replaced:
        out.append(PutSnippets(what, storage, b.snippets_dir, written, f"phoenix-{vmid}-", b.keep_vmids))
    else:
        # the new snippets first, beside the running VM's (named by content, and meta-data's instance-id is new at each
        # build): a node that cannot take them stops the rebuild before anything is destroyed
        out.append(PutSnippets(what, storage, b.snippets_dir, written, "", b.keep_vmids))
        for r in b.replaced:
            out += destroy(node, r, "was built from other inputs" if r.vmid == vmid else f"a linked clone of vm{vmid}")
        out.append(PutSnippets(f"remove VM {vmid}'s older snippets (its own rewritten, the same content)", storage,
                               b.snippets_dir, written, f"phoenix-{vmid}-"))
    return Start(out, user_tags, F.building_tags(user_tags, b.owner),
                 F.description(vm.description, {"layer": res.key, "state": "building"}), names)


def bake(estate: Estate, res: Resource, node: str, b: Bake) -> list[Step]:
    from ...config.vm import parent_of

    vmid = res.vmid
    assert vmid is not None
    vm, hyp, settings = estate.vms[vmid], estate.hypervisor, res.settings
    storage = vm.boot_disk_storage or hyp.storage.rootdir
    out: list[Step] = []
    if parent_of(estate.vms, vmid) is None and b.download:
        # before any destroy: a download that fails (network, checksum, a full storage) leaves the old layer standing
        out.append(download(node, hyp.cloud_images[vm.cloud_image or ""], "import"))
    start = begin(estate, res, node, b)
    out += start.steps
    user_tags, building, temp_desc, names = start.user_tags, start.building, start.description, start.names
    snippets = hyp.storage.snippets
    started = SetFacts(vmid, building, {"name": vm.vm_name, "kind": "qemu"}, new=True)
    hardware = {"name": vm.vm_name, "ostype": vm.os_type, "sockets": settings["sockets"], "cores": settings["cores"],
                "memory": settings["memory"], "net0": settings["net0"], "agent": "enabled=1",
                "cicustom": cicustom(snippets, names), "tags": building, "description": temp_desc}
    parent = parent_of(estate.vms, vmid)
    if parent is None:
        image = hyp.cloud_images[vm.cloud_image or ""]
        out.append(Call(f"create from {image.volume}", "POST", f"nodes/{node}/qemu",
                        {"vmid": vmid, **hardware, "scsihw": "virtio-scsi-pci",
                         "scsi0": f"{storage}:0,import-from={image.volume}", "ide2": f"{storage}:cloudinit",
                         "boot": "order=scsi0", "serial0": "socket", "vga": "serial0"}, then=started))
        out.append(Call(f"resize scsi0 to {settings['disk_gb']} GB", "PUT", qemu(node, vmid, "/resize"),
                        {"disk": "scsi0", "size": f"{settings['disk_gb']}G"}, idempotent=True))
    else:
        p = estate.vms[parent]
        linked = p.convert_to_template
        params: dict[str, Any] = {"newid": vmid, "name": vm.vm_name, "description": temp_desc}
        if linked:
            what = f"linked clone of template vm{parent}"
        else:
            params.update(full=1, snapname=p.template_snapshot_name, storage=storage)
            what = f"full clone of vm{parent}@{p.template_snapshot_name}"
        src_node, src_vmid = node, parent
        if b.source is not None and b.source.target:  # across: both disks on shared storage (qemu-server clone_vm)
            src_node, params["target"] = b.source.node, b.source.target
            what += f" on {b.source.node}, to {b.source.target}"
        elif b.source is not None and b.source.copy:  # the parent's copy on this member (its build made it)
            src_node, src_vmid = b.source.node, b.source.vmid
            what += f" (its copy VM {b.source.vmid} on {b.source.node})"
        out.append(Call(what, "POST", qemu(src_node, src_vmid, "/clone"), params, retry_locked=True, clone=True,
                        then=started))
        out.append(Call("configure", "PUT", qemu(node, vmid, "/config"),
                        {k: v for k, v in hardware.items() if k != "ostype"}, idempotent=True))
        if settings["disk_gb"] > p.boot_disk_size_gb:
            out.append(Call(f"grow scsi0 {p.boot_disk_size_gb} -> {settings['disk_gb']} GB", "PUT",
                            qemu(node, vmid, "/resize"), {"disk": "scsi0", "size": f"{settings['disk_gb']}G"},
                            idempotent=True))
    runs = feature_runs(estate, res, node)
    template_layer = vm.is_template_layer
    boots = bool(runs) or not template_layer
    if boots:
        out.append(Call("start", "POST", qemu(node, vmid, "/status/start"), idempotent=True))
        out.append(AgentWait("wait for the guest agent", node, vmid, AGENT_TIMEOUT_S))
        out.append(AgentRun("wait for cloud-init", node, vmid, res.key, ("cloud-init", "status", "--wait"),
                            timeout=CLOUD_INIT_TIMEOUT_S, warn_exit=(2,),
                            show_on_failure="/var/log/cloud-init-output.log"))
        out += runs
    stopped = template_layer
    if boots and stopped:
        out.append(Call("stop", "POST", qemu(node, vmid, "/status/shutdown"), {"forceStop": 1}, idempotent=True))
    return out + finish(estate, res, node, b, user_tags, names, stopped or not boots)


def finish(estate: Estate, res: Resource, node: str, b: Bake, user_tags: list[str], names: dict[str, str],
           stopped: bool, restored_from: str | None = None) -> list[Step]:
    """The end of a bake or a restore: snapshot, template, and last the record (then the layer is built). A restored
    template is one already: Proxmox converts a VM restored from a template's archive back into a template."""
    vmid = res.vmid
    assert vmid is not None
    vm = estate.vms[vmid]
    out: list[Step] = []
    if vm.template_snapshot_name:
        out.append(Call(f"snapshot {vm.template_snapshot_name}", "POST", qemu(node, vmid, "/snapshot"),
                        {"snapname": vm.template_snapshot_name,
                         "description": f"Phoenix layer {res.key}, build {b.build_id}"}))
    if vm.convert_to_template and restored_from is None:
        out.append(Call("convert to template", "POST", qemu(node, vmid, "/template")))
    tags = F.record_tags(user_tags, b.identity, b.build_id, res.settings_hash)
    rec = record(res, b.identity, b.build_id, b.parent_build, names)
    if restored_from is not None:
        rec["restored_from"] = restored_from
    desc = F.description(vm.description, rec)
    out.append(Call("record layer identity", "PUT", qemu(node, vmid, "/config"), {"tags": tags, "description": desc},
                    idempotent=True, records=True,
                    then=SetFacts(vmid, tags, {"name": vm.vm_name, "kind": "qemu", "maxmem": vm.memory_mb * MIB,
                                               "maxcpu": vm.cpu_sockets * vm.cpu_cores,
                                               "maxdisk": vm.boot_disk_size_gb * GIB,
                                               "template": vm.convert_to_template,
                                               "status": "stopped" if stopped else "running"})))
    return out + ha.after_build("qemu", vmid, res.settings.get("ha"), tags)


def copies(estate: Estate, res: Resource, node: str, plans: list[Any], identity: str, build_id: str,
           parent_build: str | None, owner: str | None, running: bool) -> list[Step]:
    """The layer copied to each member its children there clone it on (kinds.members.CopyPlan), as containers are:
    restored under the copy's VMID (a template's archive is restored as a template, as qmrestore does), its snapshot
    made again, then the layer's record with a phx-copy-<vmid> tag, so the copy's children compute their identities
    from the layer's build. The copy keeps the layer's cicustom; it never starts, and its clones get their own."""
    from ..members import copy_steps

    vm, hyp = estate.vms[res.vmid or 0], estate.hypervisor
    return list(copy_steps(res, "qemu", "template" if vm.convert_to_template else "VM", node, plans,
                           user_tags=list(vm.tags), description=vm.description,
                           record=record(res, identity, build_id, parent_build, {}), identity=identity,
                           build_id=build_id, owner=owner,
                           restore={"storage": vm.boot_disk_storage or hyp.storage.rootdir, "name": vm.vm_name},
                           snapshot=vm.template_snapshot_name, running=running, artifacts=hyp.artifacts))


def restore(estate: Estate, res: Resource, node: str, b: Bake, archive: Path, m: Any) -> list[Step]:
    """A bake replaced by a restore from the artifact store: the archive copied into the node's backup storage, what
    it replaces destroyed, the cloud-init snippets written as a bake writes them (named by content: the same names as
    the archive's VM had), the VM restored from it (POST /nodes/{node}/qemu with archive=<storage>:backup/<file>,
    storage, unique=1 and the config's in-place settings, which a restore may override), the archive removed, the
    disk grown to the config's size, started if the layer runs, then snapshot and record as a bake makes them, with
    the archive's identity and build ids (so its children's identities are those of their archives)."""
    from ..lxc.steps import backup_volume

    vmid = res.vmid
    assert vmid is not None
    vm, hyp, settings = estate.vms[vmid], estate.hypervisor, res.settings
    volname = backup_volume(vmid, m, "qemu")
    dump_dir = hyp.artifacts.node_dump_dir.rstrip("/")
    on_node = f"{dump_dir}/{volname}"
    # the archive on the node before anything is destroyed: a copy that fails leaves the old layer standing
    out: list[Step] = [MakeDirs(f"create {dump_dir} on the node if missing", (dump_dir,)),
                       SendFile(f"copy artifact {m.archive} to the node", archive, on_node, m.sha256)]
    start = begin(estate, res, node, b)
    out += start.steps
    user_tags, building, temp_desc, names = start.user_tags, start.building, start.description, start.names
    snippets = hyp.storage.snippets
    params: dict[str, Any] = {"vmid": vmid, "archive": f"{hyp.artifacts.backup_storage}:backup/{volname}",
                              "storage": vm.boot_disk_storage or hyp.storage.rootdir, "unique": 1,
                              "name": vm.vm_name, "sockets": settings["sockets"], "cores": settings["cores"],
                              "memory": settings["memory"], "net0": settings["net0"],
                              "cicustom": cicustom(snippets, names), "tags": building, "description": temp_desc}
    out.append(Call(f"restore from artifact {m.archive}", "POST", f"nodes/{node}/qemu", params,
                    then=SetFacts(vmid, building, {"name": vm.vm_name, "kind": "qemu"}, new=True)))
    out.append(RemoveNodeFile("remove the archive from the node", on_node))
    template_layer = vm.is_template_layer
    if not vm.convert_to_template:  # a template's disks are base volumes: it keeps the size it was exported with
        out.append(Call(f"resize scsi0 to {settings['disk_gb']} GB", "PUT", qemu(node, vmid, "/resize"),
                        {"disk": "scsi0", "size": f"{settings['disk_gb']}G"}, idempotent=True))
    if not template_layer:  # a layer that runs is left as a bake leaves it: up, its agent and cloud-init done
        out.append(Call("start", "POST", qemu(node, vmid, "/status/start"), idempotent=True))
        out.append(AgentWait("wait for the guest agent", node, vmid, AGENT_TIMEOUT_S))
        out.append(AgentRun("wait for cloud-init", node, vmid, res.key, ("cloud-init", "status", "--wait"),
                            timeout=CLOUD_INIT_TIMEOUT_S, warn_exit=(2,),
                            show_on_failure="/var/log/cloud-init-output.log"))
    return out + finish(estate, res, node, b, user_tags, names, template_layer, restored_from=m.archive)


def net_parts(value: str) -> tuple[str, str | None, dict[str, str]]:
    """A netN value, `virtio=BC:24:11:…,bridge=vmbr0,firewall=1`: the model, its MAC (None when not given), the rest."""
    parts = [p for p in str(value or "").split(",") if p]
    if not parts:
        return "", None, {}
    model, _, mac = parts[0].partition("=")
    options = {k: v for k, _, v in (p.partition("=") for p in parts[1:])}
    return model, mac or None, options


def changed(settings: dict[str, Any], config: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """The VM settings an update must send: those that differ from the guest's config (a value changed by hand
    counts) or from what Phoenix set last time. net0 keeps the guest's MAC: a netN without one gets a new MAC."""
    put = {k: settings[k] for k in ("name", "sockets", "cores", "memory")
           if str(config.get(k, "")) != str(settings[k]) or (k in old and old[k] != settings[k])}
    model, _mac, options = net_parts(settings["net0"])
    have_model, have_mac, have = net_parts(config.get("net0", ""))
    if model != have_model or any(have.get(k) != v for k, v in options.items()) or old.get("net0", settings["net0"]) \
            != settings["net0"]:
        put["net0"] = settings["net0"] if have_mac is None or model != have_model else \
            ",".join([f"{model}={have_mac}", *settings["net0"].split(",")[1:]])
    return put


def update(estate: Estate, res: Resource, node: str, facts: F.GuestFacts, config: dict[str, Any],
           reasons: str) -> list[Step]:
    """Change settings in place: one config PUT, the disk grown, a restart if Proxmox holds a change until then."""
    vmid = res.vmid
    assert vmid is not None
    vm, settings = estate.vms[vmid], res.settings
    rec = F.parse_record(config.get("description"))
    found = rec.get("settings")
    old: dict[str, Any] = found if isinstance(found, dict) else {}
    rec["settings"] = recorded(settings)
    ours = set(old.get("tags") or ())  # the tags Phoenix set last time; the others were set by hand and stay
    by_hand = [t for t in facts.user_tags if t not in ours]
    tags = F.record_tags([*vm.tags, *by_hand], facts.identity or "", facts.build_id or "", res.settings_hash)
    put = {**changed(settings, config, old), "tags": tags, "description": F.description(vm.description, rec)}
    out: list[Step] = [Call(f"update in place ({reasons or 'settings'})", "PUT", qemu(node, vmid, "/config"), put,
                            idempotent=True,
                            then=SetFacts(vmid, tags, {"maxmem": vm.memory_mb * MIB,
                                                       "maxcpu": vm.cpu_sockets * vm.cpu_cores,
                                                       "maxdisk": max(facts.maxdisk, vm.boot_disk_size_gb * GIB)}))]
    current = facts.maxdisk // GIB if facts.maxdisk else old.get("disk_gb")  # the listing, else the record
    if current and settings["disk_gb"] > current:
        out.append(Call(f"grow scsi0 {current} -> {settings['disk_gb']} GB", "PUT", qemu(node, vmid, "/resize"),
                        {"disk": "scsi0", "size": f"{settings['disk_gb']}G"}, idempotent=True))
    if facts.status == "running":
        out.append(RestartIfPending("restart", qemu(node, vmid)))
    elif running.stopped_by_hand(res, facts):
        out.append(running.start(qemu(node, vmid), vmid))
    want_ha = settings.get("ha")
    if want_ha and (ha.state_change(want_ha, facts) or (old and old.get("ha") != want_ha)):
        out.append(ha.put("qemu", vmid, want_ha, facts, tags))
    return out
