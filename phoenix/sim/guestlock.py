"""A guest's config lock: what the simulator keeps after a crash, and what `unlock` (PVE's `pct unlock`) does.

As on PVE, a guest whose task died with its host keeps the task's lock, and `pct unlock` is the way out;
a half-created guest (lock `create`) is removed, as the failed task would have removed it, and the lock a
clone takes on its source (`disk`) is dropped with the clone. Pure functions of the saved config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CREATE, CLONE_SOURCE = "create", "disk"


def after_crash(config: dict[str, Any]) -> dict[str, Any] | None:
    """The config of a saved guest as the simulator loads it (None: the half-created guest is removed)."""
    lock = config.get("lock")
    if lock == CREATE:
        return None
    if lock == CLONE_SOURCE:
        return {k: v for k, v in config.items() if k != "lock"}
    return config


def unlocked(config: dict[str, Any]) -> dict[str, Any] | None:
    """The config after `unlock`: without its lock (None: a half-created guest, which is removed instead)."""
    if config.get("lock") == CREATE:
        return None
    return {k: v for k, v in config.items() if k != "lock"}


@dataclass(frozen=True)
class Unlocked:
    """What `unlock` did to one guest."""

    vmid: int
    found: bool
    lock: str | None = None       # the lock it had (None: none)
    running: tuple[str, ...] = ()  # tasks of the guest still running (a served simulator only)

    @property
    def removed(self) -> bool:
        return self.lock == CREATE

    def describe(self, where: str) -> str:
        """What was done, in words; where: "served by process N" or "saved in DIR"."""
        host = f"on the simulated host {where}"
        if not self.found:
            return f"no guest {self.vmid} {host}"
        if self.lock is None:
            return f"guest {self.vmid} {host} is not locked: nothing to do"
        if self.removed:
            said = (f"guest {self.vmid} {host} was half-created (lock 'create'): removed, as its failed task "
                    "would have removed it")
        else:
            said = f"guest {self.vmid} {host}: lock '{self.lock}' removed"
        if self.running:
            said += f"; note: its task {', '.join(self.running)} still runs"
        return said

    def to_json(self) -> dict[str, Any]:
        return {"vmid": self.vmid, "found": self.found, "lock": self.lock, "running": list(self.running)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Unlocked:
        return cls(int(data["vmid"]), bool(data["found"]), data.get("lock"), tuple(data.get("running") or ()))
