"""`python -m phoenix.sim unlock VMID`: the simulated `pct unlock`, for a lock no running task holds.

A state dir served by another process (`python -m phoenix.sim`, advertised in server.json) is that process's
host: the request goes to it, POST /phoenix/sim/unlock/VMID on its HTTPS address, verified against its
certificate and authenticated with its API token, as Phoenix's own calls are. Otherwise the saved state is
edited where it lies, under the state dir's lock (dirlock.py); while a Phoenix run simulates the host in its
own process, that is refused with the run named.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import PhoenixError
from ..pve.endpoint import Endpoint
from .dirlock import UNLOCK, StateLock
from .guestlock import LXC, QEMU, Unlocked, unlocked
from .host import UNLOCK_PATH, served
from .store import CT, JOURNAL_FILE, STATE_FILE, VM, VOLUMES, Key, Store, dumps


def unlock(state_dir: Path, vmid: int, note: Callable[[str], None] = print) -> tuple[Unlocked, str]:
    """Remove guest vmid's lock on the simulated host of state_dir: what was done, and where (in words)."""
    found = served(state_dir)
    if found:
        endpoint, pid = found
        return through_server(endpoint, pid, vmid), f"served by process {pid}"
    return in_saved_state(Path(state_dir), vmid, note), f"saved in {state_dir}"


def through_server(endpoint: Endpoint, pid: int, vmid: int) -> Unlocked:
    """Ask the process that serves the host to unlock the guest."""
    url = urlsplit(endpoint.url)
    where = f"the simulator served by process {pid} at {endpoint.url}"
    try:
        context = ssl.create_default_context(cafile=str(endpoint.verify))
        conn = http.client.HTTPSConnection(url.hostname or "", url.port or 8006, context=context, timeout=30)
        try:
            conn.request("POST", UNLOCK_PATH.format(vmid=vmid),
                         headers={"Authorization": f"PVEAPIToken={endpoint.token_id}={endpoint.secret()}"})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as e:
        raise PhoenixError(f"cannot reach {where}: {e}; if it has stopped, run unlock again") from None
    try:
        data = json.loads(body)
        if response.status != 200:
            raise PhoenixError(f"{where} refused unlock: HTTP {response.status} {str(data.get('message', '')).strip()}")
        return Unlocked.from_json(data["data"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise PhoenixError(f"{where} gave an unexpected answer to unlock (HTTP {response.status}): {body[:200]!r}") from None


def in_saved_state(state_dir: Path, vmid: int, note: Callable[[str], None]) -> Unlocked:
    """Unlock the guest in the saved state of a host no process simulates (refused, holder named, if one does)."""
    if not ((state_dir / STATE_FILE).exists() or (state_dir / JOURNAL_FILE).exists()):
        return Unlocked(vmid, found=False)
    dirlock = StateLock(state_dir)
    dirlock.acquire(UNLOCK)
    store = Store(state_dir, note)
    try:
        records = store.read()
        for key, kind in (((CT, str(vmid)), LXC), ((VM, str(vmid)), QEMU)):
            record = records.get(key)
            if record is None:
                continue
            lock = record["config"].get("lock")
            if lock:
                config = unlocked(record["config"], kind)
                changes: dict[Key, str | None] = {key: None if config is None else dumps({**record, "config": config})}
                if config is None and kind == QEMU:  # the disks its task had made go with it
                    changes.update(without_volumes_of(records, vmid))
                store.put(changes)
            return Unlocked(vmid, True, lock, kind=kind)
        return Unlocked(vmid, found=False)
    finally:
        store.close()
        dirlock.release()


def without_volumes_of(records: dict[Key, Any], vmid: int) -> dict[Key, str | None]:
    """The storages' volume records less the disk images guest vmid owns."""
    out: dict[Key, str | None] = {}
    for (kind, name), volumes in records.items():
        if kind != VOLUMES or not isinstance(volumes, dict):
            continue
        kept = {k: v for k, v in volumes.items()
                if not (isinstance(v, dict) and v.get("vmid") == vmid and v.get("content") == "images")}
        if len(kept) != len(volumes):
            out[(kind, name)] = dumps(kept)
    return out
