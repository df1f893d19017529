"""The run's bulk listing of the Proxmox API with the standard library alone (phoenix.tlsget).

A run with nothing to do makes that one request and no other; made this way it imports neither requests nor
proxmoxer, which is most of what a no-op `doit` spends beyond doit itself (about 70 ms). Whatever it cannot answer
it leaves to `Pve` (None), which retries and explains.
"""

from __future__ import annotations

from typing import Any

from ..errors import PhoenixError
from ..tlsget import PROXY_VARIABLES, get_json
from ..tlsget import usable as _usable
from .counters import Counters
from .endpoint import Endpoint

__all__ = ["PROXY_VARIABLES", "get", "usable"]


def usable(ep: Endpoint) -> bool:
    """Whether a GET made here checks what Pve's would: an explicit CA file or fingerprint, and no proxy."""
    return _usable(ep.verify, ep.fingerprint)


def get(ep: Endpoint, counters: Counters, path: str, **params: Any) -> Any | None:
    """The `data` of GET /api2/json/<path>, or None when not answered here (not usable, refused, failed).

    A host that does not answer within the timeout is final (PhoenixError): Pve would only wait as long again."""
    if not usable(ep):
        return None
    secret = ep.secret()  # a token file that is missing, empty or readable by others: said now, whoever asks
    try:
        found = get_json(ep.url, f"/api2/json/{path}", {"Authorization": f"PVEAPIToken={ep.token_id}={secret}"},
                         verify=ep.verify, fingerprint=ep.fingerprint, timeout=ep.timeout, counters=counters,
                         params=params or None)
    except PhoenixError:
        raise PhoenixError(f"Proxmox at {ep.url} did not answer GET /{path} within {ep.timeout:.0f}s: check that the node "
                           "and its API (pveproxy) are up, or raise proxmox.timeout_s") from None
    if not isinstance(found, dict) or "data" not in found:
        if found is not None:
            counters.retried()
        return None
    return found["data"]
