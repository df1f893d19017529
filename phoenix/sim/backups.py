"""vzdump and its archives on the simulated node: what fakepve only stubs (its POST /nodes/{node}/vzdump keeps nothing).

A backup writes a real archive (a tar holding the container's config as etc/vzdump/pct.conf, as vzdump does) into
the simulated node's file system, under the storage's path (`<path>/dump/vzdump-lxc-<vmid>-<time>.tar.gz`), and
says where in its task log, in PVE's words. It compresses with gzip whichever compressor is asked for (the standard
library has no zstd) and names the file by what it holds, as vzdump does. A restore (`POST /nodes/{node}/lxc` with
`restore=1`) fails, as on PVE, when the backup volume is not in that directory: an archive copied there over SSH is
found.
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Any

DEFAULT_VZDUMP_SECONDS = 10.0


def pct_conf(config: dict[str, Any]) -> bytes:
    """A container config as /etc/pve/lxc/<vmid>.conf writes it (the description as '#' lines first)."""
    lines = [f"#{line}" for line in str(config.get("description") or "").splitlines()]
    lines += [f"{k}: {v}" for k, v in sorted(config.items()) if k not in ("description", "lock", "digest")]
    return ("\n".join(lines) + "\n").encode()


def archive_bytes(config: dict[str, Any], compressed: bool = True) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if compressed else "w") as tar:
        data = pct_conf(config)
        info = tarfile.TarInfo("./etc/vzdump/pct.conf")
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def archive_config(path: Path) -> dict[str, str]:
    """The container config kept in an archive (etc/vzdump/pct.conf), without its description; {} if none."""
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("./etc/vzdump/pct.conf")
            text = member.read().decode() if member is not None else ""
    except (OSError, KeyError, tarfile.TarError):
        return {}
    pairs = (line.split(": ", 1) for line in text.splitlines() if line and not line.startswith("#") and ": " in line)
    return dict(pairs)


class Backups:
    """Mixin of the simulator's FakePve subclass: vzdump to a file storage, backup volumes found on disk, and a restored
    template made a template again (PVE 9: "Convert restored container to template...")."""

    node_root: Path
    storages: dict[str, Any]
    ct_secs: dict[str, float]
    _restoring: dict[int, Path]

    async def _lxc_create(self, user: str, v: dict[str, Any]) -> Any:
        if v.get("restore"):
            sid, _, volname = str(v.get("ostemplate")).partition(":")
            dump = self.dump_dir(sid)
            if dump is not None and volname.startswith("backup/"):
                self.__dict__.setdefault("_restoring", {})[int(v["vmid"])] = self.node_file(f"{dump}/{volname[7:]}")
        return await super()._lxc_create(user, v)  # type: ignore[misc]

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

    def node_file(self, path: str) -> Path:
        """Where an absolute node path lies in the simulated node's file system."""
        return self.node_root.joinpath(*[p for p in path.split("/") if p and p != ".."])

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
        ct = this.ct(vmid)
        if ct is None:
            raise PveError(500, f"Configuration file 'nodes/{v['node']}/lxc/{vmid}.conf' does not exist")
        storage = v.get("storage") or "local"
        dump = self.dump_dir(storage)
        if dump is None or "backup" not in split_list(self.storages[storage].get("content")):
            raise PveError(500, f"storage '{storage}' does not support backups")
        ext = "tar" if str(v.get("compress") or "0") == "0" else "tar.gz"  # gzip for any compressor: no zstd in Python
        name = f"vzdump-lxc-{vmid}-{time.strftime('%Y_%m_%d-%H_%M_%S', time.gmtime())}.{ext}"
        path = f"{dump}/{name}"

        async def body() -> str:
            ct.config["lock"] = "backup"
            try:
                await this.pause(self.ct_secs.get("vzdump", DEFAULT_VZDUMP_SECONDS))
                data = archive_bytes({k: val for k, val in ct.config.items() if k != "lock"}, ext != "tar")
                target = self.node_file(path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                this.store_file(storage, name, len(data), content="backup")
            finally:
                ct.config.pop("lock", None)
            return f"INFO: Finished Backup of VM {vmid}"

        return str(await this.task(v["node"], "vzdump", vmid, user, body, vm=ct, lock=False,
                                   log=[f"INFO: starting new backup job: vzdump {vmid}",
                                        f"INFO: creating vzdump archive '{path}'"]))
