"""One simulator per state dir: an exclusive lock on <state-dir>/lock, held for the simulator's life.

The lock is fcntl.flock on the file, so the kernel releases it when its holder dies, however it dies. The
file says who holds it (pid and role) for the message of the one refused; it is never read to decide.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import PhoenixError

LOCK_FILE = "lock"
SERVED, IN_PROCESS, UNLOCK = "served", "in-process", "unlock"  # the holder's role
_ROLES = {
    SERVED: "served by process {pid} (`python -m phoenix.sim`)",
    IN_PROCESS: "in use by another Phoenix run, process {pid}, with its own in-process simulator",
    UNLOCK: "being edited by `python -m phoenix.sim unlock` (process {pid})",
}


@dataclass(frozen=True)
class Holder:
    """Who holds a state dir's lock, as its lock file says (pid None: it did not say in time)."""

    pid: int | None
    role: str

    def describe(self) -> str:
        if self.pid is None:
            return "in use by another process (it did not say which)"
        return _ROLES.get(self.role, "in use by process {pid}").format(pid=self.pid)


class SimBusy(PhoenixError):
    """Another process simulates (or edits) this state dir."""

    def __init__(self, state_dir: Path, holder: Holder, fix: str):
        self.state_dir, self.holder = state_dir, holder
        super().__init__(f"the simulated host in {state_dir} is {holder.describe()}: one state dir has one simulator "
                         f"at a time, or two would overwrite each other's host. {fix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def advice(requester: str, holder: Holder, state_dir: Path) -> str:
    """What the one refused can do, by who it is and who holds the state dir."""
    if holder.role == SERVED:
        if requester == SERVED:
            return "Phoenix runs of this state dir use it; stop it (Ctrl-C) first to serve the host again."
        if requester == UNLOCK:
            return "It is starting or stopping: run unlock again in a moment (while it serves, unlock goes through it)."
        return "It is starting or stopping: run again in a moment (while it serves, runs use it)."
    if holder.role == IN_PROCESS:
        if requester == SERVED:
            return "Wait for that run to end, then serve the host."
        if requester == UNLOCK:
            return ("Wait for that run to end (a run that stops releases the locks of the tasks it cuts off), "
                    "then run unlock again.")
        return (f"Wait for that run to end, or serve the host once with `python -m phoenix.sim --state-dir {state_dir}` "
                "so that every run shares it.")
    return "Wait for it to end, then try again."


class StateLock:
    """The exclusive lock of one state dir (not reentrant: a second StateLock of the same dir is refused too)."""

    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir)
        self.path = self.dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, role: str) -> None:
        """Take the lock now for a holder of this role, or raise SimBusy naming the holder and what to do."""
        if self._fd is not None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder()
            raise SimBusy(self.dir, holder, advice(role, holder, self.dir)) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps({"pid": os.getpid(), "role": role}) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor of the open file releases the flock

    def holder(self, wait: float = 1.0) -> Holder:
        """Who holds the lock, as its file says; a holder that has just taken it is given `wait` s to say so."""
        deadline = time.monotonic() + wait
        while True:
            try:
                data = json.loads(self.path.read_text())
                pid, role = int(data["pid"]), str(data["role"])
                if _alive(pid):
                    return Holder(pid, role)
            except (OSError, ValueError, KeyError, TypeError):
                pass
            if time.monotonic() > deadline:
                return Holder(None, "")
            time.sleep(0.02)
