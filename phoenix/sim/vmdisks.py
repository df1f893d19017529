"""A VM disk resize on the simulated node, as qemu-server's `PUT /nodes/{node}/qemu/{vmid}/resize` does it (fakepve
0.5 accepts the call and changes nothing, so a VM's listed `maxdisk` never followed its disk).

As PVE: the drive must exist and not be a CD-ROM; `size` is absolute or, with `+`, added to the current size; a disk
never shrinks ("shrinking disks is not supported"); the size is written back into the drive's `size=` (which the
listing's `maxdisk` reads) and into the volume. It runs as a `resize` task, as on PVE 8 and 9.
"""

from __future__ import annotations

from typing import Any


class VmDisks:
    """Mixin of the simulator's FakePve subclass: the `_routes_vmdisks` table and its handler."""

    storages: dict[str, Any]

    def _routes_vmdisks(self) -> list[tuple[str, str, Any]]:
        return [("PUT", "/nodes/{node}/qemu/{vmid}/resize", self._qm_resize)]

    async def _qm_resize(self, v: dict[str, Any], user: str) -> Any:
        from fakepve.lxc import format_size, parse_size
        from fakepve.model import PveError
        from fakepve.qemu import is_cdrom, join_drive, split_drive

        vm = self.find(v["node"], v["vmid"])  # type: ignore[attr-defined]
        self._qm_perm(user, vm.vmid, None, "VM.Config.Disk")  # type: ignore[attr-defined]
        self._check_lock(vm)  # type: ignore[attr-defined]
        disk, text = str(v["disk"]), str(v["size"])
        if disk not in vm.config:
            raise PveError(500, f"disk '{disk}' does not exist\n")
        volume, props = split_drive(vm.config[disk])
        if is_cdrom(volume, props):
            raise PveError(500, "you can't resize a cdrom\n")
        asked = parse_size(text.lstrip("+"))
        if asked is None:
            raise PveError(500, "invalid size string\n")
        current = parse_size(props.get("size") or 0) or 0
        new = current + asked if text.startswith("+") else asked
        if new < current:
            raise PveError(500, "shrinking disks is not supported\n")

        async def body() -> None:
            props["size"] = format_size(new)
            vm.config[disk] = join_drive(volume, props)
            sid, _, name = volume.partition(":")
            held = self.storages.get(sid, {}).get("volumes", {}).get(name)
            if isinstance(held, dict):
                held["size"] = new
        return await self.task(vm.node, "resize", vm.vmid, user, body, vm=vm, lock=False)  # type: ignore[attr-defined]
