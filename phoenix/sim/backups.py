"""vzdump and its archives on the simulated node: what fakepve only stubs (its POST /nodes/{node}/vzdump keeps nothing,
and it refuses every VM restore).

A backup writes a real archive into the simulated node's file system, under the storage's path, and says where in
its task log, in PVE's words: for a container a tar holding its config as etc/vzdump/pct.conf, as vzdump does
(`<path>/dump/vzdump-lxc-<vmid>-<time>.tar.gz`); for a VM a tar in PVE's tar format of a VM backup, its config as
qemu-server.conf (`vzdump-qemu-<vmid>-<time>.tar.gz`; a real node writes VMA, .vma.zst, which this stand-in does not
write: no disk data is simulated). It compresses with gzip whichever compressor is asked for (the standard library has
no zstd) and names the file by what it holds, as vzdump does. A container restore (`POST /nodes/{node}/lxc` with
`restore=1`) fails, as on PVE, when the backup volume is not in that directory: an archive copied there over SSH is
found.

A VM restore (`POST /nodes/{node}/qemu` with `archive=`) is Phoenix's own stand-in, after qemu-server's create_vm and
restore_*_archive (fakepve 0.5 refuses it): the archive must be a backup volume (`<storage>:backup/<file>`; another
guest's needs VM.Backup on it) that exists, on a storage that holds backups (stricter than PVE, which reads a backup
volume of any directory storage; Phoenix checks the backup storage's content before a restore anyway); the VMID must
be free (a VM there only with force=1, stopped and unprotected; a container's never); drive options conflict with
`archive`; other config options are allowed and override the archive's (PVE 7.2+), checked like a create's. In the
task the archive must hold a VM's config; the disks are allocated anew (on `storage` if given, else on their own
storage; a cloud-init drive made again; a forced restore frees the old VM's disks); `unique=1` gives the NICs new MACs
and new smbios1 uuid and vmgenid; no snapshot is kept (vzdump keeps none); the archive of a template is restored as a
template ("Convert to template.").
"""

from __future__ import annotations

import contextvars
import io
import re
import tarfile
import time
from pathlib import Path
from typing import Any

DEFAULT_VZDUMP_SECONDS = 10.0


CT_CONF = "./etc/vzdump/pct.conf"   # where vzdump keeps a container's config in its archive
QM_CONF = "./qemu-server.conf"      # where PVE's tar format of a VM backup keeps the VM's config


def pct_conf(config: dict[str, Any]) -> bytes:
    """A guest config as /etc/pve/{lxc,qemu-server}/<vmid>.conf writes it (the description as '#' lines first)."""
    lines = [f"#{line}" for line in str(config.get("description") or "").splitlines()]
    lines += [f"{k}: {v}" for k, v in sorted(config.items()) if k not in ("description", "lock", "digest")]
    return ("\n".join(lines) + "\n").encode()


def archive_bytes(config: dict[str, Any], compressed: bool = True, member: str = CT_CONF) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if compressed else "w") as tar:
        data = pct_conf(config)
        info = tarfile.TarInfo(member)
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def archive_config(path: Path, member: str = CT_CONF, description: bool = False) -> dict[str, str]:
    """The guest config kept in an archive (etc/vzdump/pct.conf of a container's), without its description unless
    asked; {} if none (or not a readable archive)."""
    try:
        with tarfile.open(path) as tar:
            found = tar.extractfile(member)
            text = found.read().decode() if found is not None else ""
    except (OSError, KeyError, tarfile.TarError, EOFError, ValueError):
        return {}
    lines = text.splitlines()
    pairs = (line.split(": ", 1) for line in lines if line and not line.startswith("#") and ": " in line)
    out = dict(pairs)
    notes = [line[1:] for line in lines if line.startswith("#")]
    if description and notes:
        out["description"] = "\n".join(notes)
    return out


def _true(value: Any) -> bool:
    return str(value if value is not None else "0").lower() in ("1", "true", "yes", "on")


_NODE: contextvars.ContextVar[str] = contextvars.ContextVar("phoenix_sim_node", default="")


class Backups:
    """Mixin of the simulator's FakePve subclass: vzdump to a file storage, backup volumes found on disk, and a restored
    template made a template again (PVE 9: "Convert restored container to template...")."""

    node_root: Path
    nodes: dict[str, Any]
    storages: dict[str, Any]
    ct_secs: dict[str, float]
    _restoring: dict[int, Path]

    async def _lxc_create(self, user: str, v: dict[str, Any]) -> Any:
        token = _NODE.set(str(v.get("node") or ""))  # a backup volume is a file of the node the restore runs on
        try:
            if v.get("restore"):
                sid, _, volname = str(v.get("ostemplate")).partition(":")
                dump = self.dump_dir(sid)
                if dump is not None and volname.startswith("backup/"):
                    self.__dict__.setdefault("_restoring", {})[int(v["vmid"])] = self.node_file(f"{dump}/{volname[7:]}")
            return await super()._lxc_create(user, v)  # type: ignore[misc]
        finally:
            _NODE.reset(token)

    async def task(self, node: str, ttype: str, tid: Any, user: str, body: Any, vm: Any = None, lock: bool = True,
                   log: Any = ()) -> Any:
        archive = self.__dict__.get("_restoring", {}).pop(int(tid), None) if ttype == "vzrestore" else None
        if archive is not None and vm is not None and archive_config(archive).get("template") == "1":
            from fakepve.lxc import print_mount, to_base

            inner = body

            async def body() -> Any:
                note = await inner()
                for key, mount in vm.volumes():
                    mount["volume"] = to_base(mount["volume"])
                    vm.config[key] = print_mount(mount, key == "rootfs")
                vm.config["template"] = 1
                return note
        return await super().task(node, ttype, tid, user, body, vm=vm, lock=lock, log=log)  # type: ignore[misc]

    def _routes_backups(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/nodes/{node}/vzdump", self._vzdump)]

    def node_file(self, path: str, node: str | None = None) -> Path:
        """Where an absolute path of a node (default: the one of the request being answered) lies in that simulated
        node's file system: each member has its own (transport.simulated.node_fs)."""
        from ..transport.simulated import node_fs

        node = node or _NODE.get() or None
        root = self.node_root if node is None else node_fs(self.node_root, node, next(iter(self.nodes)))
        return root.joinpath(*[p for p in path.split("/") if p and p != ".."])

    def dump_dir(self, storage: str) -> str | None:
        path = self.storages.get(storage, {}).get("path")
        return f"{path.rstrip('/')}/dump" if path else None

    def volume_exists(self, volid: str) -> bool | None:
        sid, colon, volname = str(volid).partition(":")
        dump = self.dump_dir(sid) if colon else None
        if dump is not None and volname.startswith("backup/"):
            return self.node_file(f"{dump}/{volname[len('backup/'):]}").is_file()
        return super().volume_exists(volid)  # type: ignore[misc]

    async def _vzdump(self, v: dict[str, Any], user: str) -> str:
        from fakepve.model import PveError
        from fakepve.routing import split_list

        this: Any = self
        ids = split_list(v.get("vmid"))
        if len(ids) != 1 or v.get("all"):
            raise PveError(400, "Parameter verification failed.", {"vmid": "the simulator backs up one guest at a time"})
        vmid = int(ids[0])
        ct, vm = this.ct(vmid), this.vm(vmid)
        guest = ct if ct is not None else vm
        if guest is None:
            raise PveError(500, f"unable to find VM {vmid}")
        storage = v.get("storage") or "local"
        dump = self.dump_dir(storage)
        here = str(v["node"])
        if dump is None or "backup" not in split_list(self.storages[storage].get("content")):
            raise PveError(500, f"storage '{storage}' does not support backups")
        if guest.lock or guest.config.get("lock"):
            raise PveError(500, f"VM is locked ({guest.lock or guest.config.get('lock')})")
        kind, member = ("lxc", CT_CONF) if ct is not None else ("qemu", QM_CONF)
        ext = "tar" if str(v.get("compress") or "0") == "0" else "tar.gz"  # gzip for any compressor: no zstd in Python
        name = f"vzdump-{kind}-{vmid}-{time.strftime('%Y_%m_%d-%H_%M_%S', time.gmtime())}.{ext}"
        path = f"{dump}/{name}"

        async def body() -> str:
            guest.config["lock"] = "backup"
            if vm is not None:
                vm.lock = "backup"
            try:
                await this.pause(self.ct_secs.get("vzdump", DEFAULT_VZDUMP_SECONDS))
                config = {k: val for k, val in guest.config.items() if k != "lock"}
                if vm is not None and vm.template:
                    config["template"] = 1
                data = archive_bytes(config, ext != "tar", member)
                target = self.node_file(path, here)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                this.store_file(storage, name, len(data), content="backup")
            finally:
                guest.config.pop("lock", None)
                if vm is not None:
                    vm.lock = None
            return f"INFO: Finished Backup of VM {vmid}"

        return str(await this.task(v["node"], "vzdump", vmid, user, body, vm=guest, lock=False,
                                   log=[f"INFO: starting new backup job: vzdump {vmid}",
                                        f"INFO: creating vzdump archive '{path}'"]))

    # ------------------------------------------------------------ VM restore

    async def _qm_create(self, v: dict[str, Any], user: str) -> Any:
        if v.get("archive"):
            return await self._qm_restore(v, user)
        return await super()._qm_create(v, user)  # type: ignore[misc]

    def _qm_restore_checks(self, v: dict[str, Any], user: str) -> tuple[Path, dict[str, Any], Any]:
        """What qemu-server's create_vm checks of a restore before it forks the task: (archive file, config overrides,
        the VM it overwrites or None)."""
        from fakepve.model import PveError
        from fakepve.qemu import CREATE_ONLY, DRIVE_KEY
        from fakepve.routing import param_error, split_list

        this: Any = self
        node, vmid, archive = v["node"], int(v["vmid"]), str(v["archive"])
        pool, storage, force = v.get("pool"), v.get("storage"), _true(v.get("force"))
        emsg = f"unable to restore VM {vmid} -"
        this.need_quorum()
        this._qm_check_pool(pool)
        if storage:
            this.require(user, "/storage/" + storage, "Datastore.AllocateSpace")
            this._qm_image_store(storage, user)
        existing = this.vm(vmid)
        if not (this.allowed(user, f"/vms/{vmid}", "VM.Allocate")
                or (pool and this.allowed(user, "/pool/" + pool, "VM.Allocate"))
                or (force and existing is not None and this.allowed(user, f"/vms/{vmid}", "VM.Backup"))):
            raise PveError(403, "Permission check failed")
        overrides = {k: x for k, x in v.items() if k not in CREATE_ONLY}
        for key in sorted(overrides):
            if DRIVE_KEY.match(key):
                raise param_error(**{key: "option conflicts with option 'archive'"})
        for key in sorted(overrides):
            priv = this._config_priv(key)
            if priv == "root" and user != "root@pam":
                raise PveError(403, f"only root can set '{key}' config")
            if priv != "root":
                this._qm_perm(user, vmid, pool, priv)
        sid, colon, volname = archive.partition(":")
        if not colon:
            if user != "root@pam":
                raise PveError(403, "Only root can pass arbitrary filesystem paths.")
            raise PveError(500, f"{emsg} the simulator restores backup volumes only, not {archive}")
        store = this._store(sid)
        if not volname.startswith("backup/") or "/" in volname[len("backup/"):]:
            raise PveError(500, f"unable to use volume {archive} - content type needs to be 'backup'")
        owner = re.match(r"vzdump-(?:qemu|lxc|openvz)-(\d+)-", volname[len("backup/"):])
        if owner and int(owner.group(1)) != vmid and not this.allowed(user, f"/storage/{sid}", "Datastore.Allocate"):
            this.require(user, f"/storage/{sid}", "Datastore.AllocateSpace")  # another guest's backup (check_volume_access)
            this.require(user, f"/vms/{owner.group(1)}", "VM.Backup")
        dump = self.dump_dir(sid)
        if dump is None or "backup" not in split_list(store.get("content")):
            raise PveError(500, f"storage '{sid}' does not support backups")
        path = self.node_file(f"{dump}/{volname[len('backup/'):]}", node)
        if not path.is_file():
            raise PveError(500, f"can't find archive file '{archive}'")
        if not volname[len("backup/"):].startswith("vzdump-qemu-"):
            raise PveError(500, f"{emsg} {archive} is not a VM backup (vzdump-qemu-...)")
        if existing is None and this.guest(vmid) is not None:
            raise PveError(500, f"{emsg} CT {vmid} already exists on node '{this.guest(vmid).node}'")
        if existing is not None:
            if not force:
                raise PveError(500, f"{emsg} VM {vmid} already exists on node '{existing.node}'")
            if existing.config.get("protection") in (1, "1", True):
                raise PveError(500, f"{emsg} protection mode enabled")
            if existing.status == "running":
                raise PveError(500, f"{emsg} vm is running")
            this._check_lock(existing)
        del node
        return path, overrides, existing

    async def _qm_restore(self, v: dict[str, Any], user: str) -> Any:
        from fakepve.lxc import format_size, parse_size
        from fakepve.model import FakeVm, TaskError
        from fakepve.qemu import drives_of, is_cdrom, join_drive, volume_ref, with_mac

        this: Any = self
        node, vmid = v["node"], int(v["vmid"])
        path, overrides, existing = self._qm_restore_checks(v, user)
        storage, unique, pool = v.get("storage"), _true(v.get("unique")), v.get("pool")
        emsg = f"unable to restore VM {vmid} -"
        vm = existing if existing is not None else FakeVm(vmid, f"VM {vmid}", node=node)
        this._qm_lock(vm, "create")
        if existing is None:
            this.vms.append(vm)
        made: list[str] = []

        async def body() -> str:
            import uuid

            lines: list[str] = [f"restore tar archive '{path.name}'"]
            try:
                config: dict[str, Any] = archive_config(path, QM_CONF, description=True)
                if not config:
                    raise TaskError(f"{emsg} no VM configuration (qemu-server.conf) in the archive {path.name}")
                if existing is not None:  # force: the old VM's disks go
                    for _key, volume, _props in drives_of(existing.config):
                        if volume_ref(volume)[0] is not None and not volume_ref(volume)[1].startswith("iso/"):
                            this._qm_free(volume)
                    existing.snapshots = {}
                template = _true(config.pop("template", 0))
                for key in ("lock", "parent", "snaptime", "vmstate", "digest"):
                    config.pop(key, None)
                for key, volume, props in drives_of(config):
                    sid, name = volume_ref(volume)
                    if sid is None or volume in ("none", "cdrom"):
                        continue
                    if is_cdrom(volume, props):
                        if name.startswith("iso/"):
                            continue
                        target = storage or sid  # a cloud-init drive: made again, as restore does
                        config[key], ids = this._qm_new_drive(vmid, key, f"{target}:cloudinit", target)
                        made.extend(ids)
                        continue
                    target = storage or sid
                    if target not in this.storages:
                        raise TaskError(f"{emsg} storage '{target}' does not exist")
                    size = parse_size(props.get("size", "0")) or 0
                    volid, _fmt = this._qm_alloc(target, vmid, None, size)
                    made.append(volid)
                    props = dict(props)
                    if size:
                        props["size"] = format_size(size)
                    config[key] = join_drive(volid, props)
                    lines.append(f"map '{key}' to '{volid}'")
                config.update(overrides)
                if unique:
                    for key in [k for k in config if k.startswith("net") and k[3:].isdigit()]:
                        config[key] = with_mac(config[key], fresh=True)
                    if str(config.get("vmgenid", "1")) != "0":
                        config["vmgenid"] = str(uuid.uuid4())
                    smbios = [p for p in str(config.get("smbios1", "")).split(",") if p and not p.startswith("uuid=")]
                    config["smbios1"] = ",".join([f"uuid={uuid.uuid4()}", *smbios])
                else:
                    for key in [k for k in config if k.startswith("net") and k[3:].isdigit()]:
                        config[key] = with_mac(config[key])
                vm.config = config
                vm.name = str(config.get("name") or f"VM {vmid}")
                vm.status = vm.qmpstatus = "stopped"
                if template:  # qemu-server: "Convert restored VM to template if backup was VM template"
                    lines.append("Convert to template.")
                    vm.template = True
                    vm.config["template"] = 1
                    for key, volume, props in drives_of(vm.config, skip_cdrom=True):
                        vm.config[key] = join_drive(this._qm_rename_volume(volume), props)
                else:
                    vm.template = False
            except BaseException as e:
                for volid in made:
                    this._qm_free(volid)
                if vm in this.vms and existing is None:
                    this.vms.remove(vm)
                if isinstance(e, TaskError):
                    raise
                raise TaskError(f"{emsg} {getattr(e, 'message', None) or e}") from e
            this._qm_lock(vm, None)
            if pool:
                this._pool_join(pool, vmid)
            return "\n".join(lines)

        return await this.task(node, "qmrestore", vmid, user, body, vm=vm)
