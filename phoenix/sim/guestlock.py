"""A guest's config lock: what the simulator keeps after a crash, and what `unlock` (PVE's `pct unlock`) does.

As on PVE, a guest whose task died with its host keeps the task's lock, and `unlock` is the way out; a half-made
guest is removed instead, as the failed task would have removed it: a container or VM being created (lock `create`,
also a container clone's target) or a VM clone's target (lock `clone`: qemu-server's clone removes its target when it
fails). The lock a container clone takes on its source (`disk`) is dropped with the clone. Pure functions of the saved
config; kind is "lxc" or "qemu".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CREATE, CLONE_SOURCE, CLONE_TARGET = "create", "disk", "clone"
LXC, QEMU = "lxc", "qemu"
HALF_MADE = {LXC: (CREATE,), QEMU: (CREATE, CLONE_TARGET)}  # the locks of a guest its task was still making


def half_made(lock: Any, kind: str = LXC) -> bool:
    """Whether a guest with this lock was still being made (created, restored or cloned into) by its task."""
    return lock in HALF_MADE[kind]


def after_crash(config: dict[str, Any], kind: str = LXC) -> dict[str, Any] | None:
    """The config of a saved guest as the simulator loads it (None: the half-made guest is removed)."""
    lock = config.get("lock")
    if half_made(lock, kind):
        return None
    if lock == CLONE_SOURCE and kind == LXC:
        return {k: v for k, v in config.items() if k != "lock"}
    return config


def unlocked(config: dict[str, Any], kind: str = LXC) -> dict[str, Any] | None:
    """The config after `unlock`: without its lock (None: a half-made guest, which is removed instead)."""
    if half_made(config.get("lock"), kind):
        return None
    return {k: v for k, v in config.items() if k != "lock"}


@dataclass(frozen=True)
class Unlocked:
    """What `unlock` did to one guest."""

    vmid: int
    found: bool
    lock: str | None = None       # the lock it had (None: none)
    running: tuple[str, ...] = ()  # tasks of the guest still running (a served simulator only)
    kind: str = LXC

    @property
    def removed(self) -> bool:
        return half_made(self.lock, self.kind)

    def describe(self, where: str) -> str:
        """What was done, in words; where: "served by process N" or "saved in DIR"."""
        host = f"on the simulated host {where}"
        what = "VM" if self.kind == QEMU else "guest"
        if not self.found:
            return f"no guest {self.vmid} {host}"
        if self.lock is None:
            return f"{what} {self.vmid} {host} is not locked: nothing to do"
        if self.removed:
            said = (f"{what} {self.vmid} {host} was half-created (lock '{self.lock}'): removed, as its failed task "
                    "would have removed it")
        else:
            said = f"{what} {self.vmid} {host}: lock '{self.lock}' removed"
        if self.running:
            said += f"; note: its task {', '.join(self.running)} still runs"
        return said

    def to_json(self) -> dict[str, Any]:
        return {"vmid": self.vmid, "found": self.found, "lock": self.lock, "running": list(self.running),
                "kind": self.kind}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Unlocked:
        return cls(int(data["vmid"]), bool(data["found"]), data.get("lock"), tuple(data.get("running") or ()),
                   str(data.get("kind") or LXC))
