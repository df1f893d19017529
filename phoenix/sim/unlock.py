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
from urllib.parse import urlsplit

from ..errors import PhoenixError
from ..pve.endpoint import Endpoint
from .dirlock import UNLOCK, StateLock
from .guestlock import Unlocked, unlocked
from .host import UNLOCK_PATH, served
from .store import CT, JOURNAL_FILE, STATE_FILE, Store, dumps


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
        record = store.read().get((CT, str(vmid)))
        if record is None:
            return Unlocked(vmid, found=False)
        lock = record["config"].get("lock")
        if lock:
            config = unlocked(record["config"])
            store.put({(CT, str(vmid)): None if config is None else dumps({**record, "config": config})})
        return Unlocked(vmid, True, lock)
    finally:
        store.close()
        dirlock.release()
