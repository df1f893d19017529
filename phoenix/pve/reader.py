"""One GET on the Proxmox API with the standard library alone (http.client and ssl): the run's bulk listing.

A run with nothing to do makes that one request and no other. Made this way it imports neither requests
nor proxmoxer, which is most of what a no-op `doit` spends beyond doit itself (about 70 ms).

It is used only where it checks exactly what `Pve`'s requests session checks: the certificate verified
against the configured CA file (host name included) or pinned by its SHA-256 fingerprint (compared before
the token is sent), and no proxy in the environment. Whatever it cannot answer, it leaves to `Pve`,
which retries and explains.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import PhoenixError
from .counters import Counters
from .endpoint import Endpoint, fingerprint_hex

PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def usable(ep: Endpoint) -> bool:
    """Whether a GET made here checks what Pve's would: an explicit CA file or fingerprint, and no proxy."""
    explicit = bool(ep.fingerprint) or isinstance(ep.verify, str)
    return explicit and not any(os.environ.get(name) for name in PROXY_VARIABLES)


def _context(ep: Endpoint) -> ssl.SSLContext:
    if ep.fingerprint:  # the fingerprint is the check, made on the certificate itself: no CA chain, no host name
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=str(ep.verify))


def get(ep: Endpoint, counters: Counters, path: str, **params: Any) -> Any | None:
    """The `data` of GET /api2/json/<path>, or None when not answered here (not usable, refused, failed).

    An attempt that was made and failed counts as a retry of the caller's own call to Pve. A host that does not
    answer within the timeout is final (PhoenixError): Pve would only wait as long again."""
    if not usable(ep):
        return None
    url = urlsplit(ep.url)
    secret = ep.secret()  # a token file that is missing, empty or readable by others: said now, whoever asks
    try:
        context = _context(ep)  # a missing or malformed CA file: Pve says so, as it does for its own calls
    except (OSError, ValueError):
        return None
    conn = http.client.HTTPSConnection(url.hostname or "", url.port or 8006, context=context, timeout=ep.timeout)
    t0 = time.monotonic()
    try:
        conn.connect()
        if ep.fingerprint:
            der = conn.sock.getpeercert(binary_form=True) or b""
            if hashlib.sha256(der).hexdigest() != fingerprint_hex(ep.fingerprint):
                counters.retried()
                return None  # not the pinned certificate: the token is not sent
        query = f"?{urlencode(params)}" if params else ""
        conn.request("GET", f"/api2/json/{path}{query}",
                     headers={"Authorization": f"PVEAPIToken={ep.token_id}={secret}", "Accept": "application/json"})
        try:
            response = conn.getresponse()
            body = response.read()
        finally:
            counters.add("GET", time.monotonic() - t0)  # sent: a request, answered or not
        if response.status != 200:
            counters.retried()
            return None
        return json.loads(body)["data"]
    except TimeoutError:  # accepted the connection and never answered: final, asking again only multiplies the wait
        raise PhoenixError(f"Proxmox at {ep.url} did not answer GET /{path} within {ep.timeout:.0f}s: check that the node "
                           "and its API (pveproxy) are up, or raise proxmox.timeout_s") from None
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        counters.retried()
        return None
    finally:
        conn.close()
