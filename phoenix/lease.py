"""One run at a time per host: a lease held through the Proxmox API while a run changes the host.

The lease is a resource pool named `phoenix-lease`, made with `POST /pools`: Proxmox creates a pool only if
none of that name exists, so two runs can never both hold it. Its comment names the holder (run id, host,
pid, when it started) and when the lease expires; the holder renews it while it lives (a thread), so a run
that died (kill -9, a lost machine) holds it only until it expires. A run on the same machine whose process
is gone holds nothing: its lease is broken at once. A run takes the lease only when it is about to write:
a run with nothing to do never touches it.

The comment format is Phoenix's own (`parse`/`comment` are pure); the calls are at the edges of `Lease`.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import PhoenixError

if TYPE_CHECKING:
    from .pve.client import Pve

POOL = "phoenix-lease"
SECONDS = 120.0                   # how long a lease lasts without renewal
_ACTIVE: set[str] = set()         # ids of the runs of this process that hold or held a lease and are alive
_ACTIVE_LOCK = threading.Lock()
_FORMAT = re.compile(r"^phoenix-lease v1 run=(?P<run>[0-9a-z]+) host=(?P<host>\S+) pid=(?P<pid>\d+) "
                     r"pidstart=(?P<pidstart>\d+) started=(?P<started>\d+) expires=(?P<expires>\d+)")


class LeaseHeld(PhoenixError):
    """Another run holds the host."""


class LeaseLost(PhoenixError):
    """This run's lease expired or was taken: it must not write any more."""


@dataclass(frozen=True)
class Holder:
    run: str
    host: str
    pid: int
    pidstart: int          # the process's start time (clock ticks since boot): a reused pid is another process
    started: int           # epoch seconds
    expires: int           # epoch seconds

    def describe(self, now: float) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        left = self.expires - now
        when = f"expires in {left:.0f}s unless renewed" if left > 0 else f"expired {-left:.0f}s ago"
        return f"run {self.run} on {self.host}, pid {self.pid}, since {since} ({when})"


def comment(h: Holder) -> str:
    return (f"phoenix-lease v1 run={h.run} host={h.host} pid={h.pid} pidstart={h.pidstart} started={h.started} "
            f"expires={h.expires} -- held by a Phoenix run while it changes this host; renewed while it runs")


def parse(text: str | None) -> Holder | None:
    m = _FORMAT.match(text or "")
    if not m:
        return None
    return Holder(m["run"], m["host"], int(m["pid"]), int(m["pidstart"]), int(m["started"]), int(m["expires"]))


def process_start(pid: int) -> int:
    """When a process started (clock ticks since boot, /proc/<pid>/stat field 22); 0 if unknown, -1 if gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - tiny read
    except FileNotFoundError:
        return -1
    except OSError:
        return 0
    return int(stat.rpartition(")")[2].split()[19])


def stale(h: Holder, now: float, host: str, pid: int) -> str | None:
    """Why a holder no longer holds the host (so its lease may be broken), or None if it may still be alive."""
    if h.expires <= now:
        return "its lease expired"
    if h.host != host:
        return None
    if h.pid == pid:
        with _ACTIVE_LOCK:
            return None if h.run in _ACTIVE else "an earlier run of this process that has ended"
    started = process_start(h.pid)
    if started == -1:
        return f"process {h.pid} is gone"
    if started and h.pidstart and started != h.pidstart:
        return f"process {h.pid} is another process now"
    return None


class NoQuorum(PhoenixError):
    """The cluster has lost quorum: its configuration is read-only, and the run writes nothing."""


class Lease:
    """This run's lease on the host: acquire, renew (in a thread), check, release."""

    def __init__(self, pve: Callable[[], Pve], run_id: str, say: Callable[[str], None], seconds: float = SECONDS,
                 clock: Callable[[], float] = time.time):
        self._pve, self.run_id, self._say, self.seconds, self._clock = pve, run_id, say, seconds, clock
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.held = False
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = int(self._clock())

    def _holder(self) -> Holder:
        now = int(self._clock())
        return Holder(self.run_id, self.host, self.pid, max(process_start(self.pid), 0), self._started,
                      now + int(self.seconds))

    def current(self) -> Holder | None:
        """Who holds the host now (None: nobody, or a pool of that name that is not a Phoenix lease)."""
        from .pve.client import ApiError

        try:
            found = self._pve().get(f"pools/{POOL}")
        except ApiError as e:
            if "does not exist" in str(e):
                return None
            raise
        return parse((found or {}).get("comment"))

    def acquire(self) -> None:
        """Take the lease, breaking a stale one; LeaseHeld names the live holder."""
        from .pve.client import ApiError

        with _ACTIVE_LOCK:
            _ACTIVE.add(self.run_id)
        for _attempt in range(2):
            try:
                self._pve().run("POST", "pools", poolid=POOL, comment=comment(self._holder()))
            except ApiError as e:
                if "no quorum" in str(e):  # pmxcfs is read-only: nothing can be written anywhere in the cluster
                    raise NoQuorum("the cluster has no quorum (Proxmox: \"cluster not ready - no quorum?\"), so "
                                   "nothing can be written: nothing was changed. Check the members with `pvecm status` "
                                   "and run again once the cluster is quorate.") from None
                if "already exists" not in str(e):
                    raise
            else:
                self.held = True
                self._renew_in_background()
                return
            holder = self.current()
            now = self._clock()
            if holder is None:
                raise LeaseHeld(f"the host has a pool named {POOL} that is not a Phoenix lease: Phoenix uses that pool to "
                                f"let one run at a time change the host. Remove or rename it (pveum pool delete {POOL}).")
            why = stale(holder, now, self.host, self.pid)
            if why is None:
                raise LeaseHeld(f"another Phoenix run is changing this host: {holder.describe(now)}. Nothing was changed. "
                                "Wait for it to finish and run again; if that run is gone for good, its lease expires "
                                f"by itself, or remove it now with: pveum pool delete {POOL}")
            self._say(f"phoenix: breaking the host's lease of run {holder.run} on {holder.host} ({why})")
            again = self.current()
            if again == holder:
                self._pve().run("DELETE", f"pools/{POOL}")
        raise LeaseHeld(f"could not take the host's lease ({POOL}): another run took it meanwhile; run again")

    def _renew_in_background(self) -> None:
        def renew() -> None:
            while not self._stop.wait(self.seconds / 4):
                try:
                    self.renew()
                except LeaseLost:
                    return
                except PhoenixError:
                    continue  # a network hiccup: try again; the lease lasts a while yet

        self._thread = threading.Thread(target=renew, name="phoenix-lease", daemon=True)
        self._thread.start()

    def renew(self) -> None:
        holder = self.current()
        if holder is None or holder.run != self.run_id:
            self.lost = (f"this run's lease on the host was taken by run {holder.run} on {holder.host}" if holder
                         else "this run's lease on the host is gone (removed, or expired and taken)")
            raise LeaseLost(self.lost + ": stopped before changing anything more; run again")
        self._pve().run("PUT", f"pools/{POOL}", idempotent=True, comment=comment(self._holder()))

    def check(self) -> None:
        """Before a write: LeaseLost if the renewing thread found the lease gone."""
        if self.lost:
            raise LeaseLost(self.lost + ": stopped before changing anything more; run again")

    def verify(self) -> None:
        """Before a build is recorded: ask the host that this run still holds it (one read, and a renewal)."""
        self.check()
        self.renew()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self.run_id)
        if not self.held:
            return
        self.held = False
        try:
            holder = self.current()
            if holder is not None and holder.run == self.run_id:
                self._pve().run("DELETE", f"pools/{POOL}")
        except PhoenixError as e:
            self._say(f"phoenix: could not release the host's lease ({e}); it expires by itself in {self.seconds:.0f}s")
