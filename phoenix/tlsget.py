"""One GET over HTTPS with the standard library alone (http.client and ssl), for a run's bulk listings.

A run with nothing to do makes only listings; made this way they import neither requests nor proxmoxer. A GET here
checks exactly what the requests sessions of the API clients check: the certificate verified against the
configured CA file (host name included), or pinned by its SHA-256 fingerprint (compared before any credential is
sent), and no proxy in the environment. Whatever it cannot answer (another trust setting, a refusal, a dropped
connection) it leaves to the caller's own client (None), which retries and explains; a host that does not answer
within the timeout is final (PhoenixError): the client would only wait as long again.
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

from .errors import PhoenixError
from .pve.counters import Counters

PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def fingerprint_hex(fingerprint: str) -> str:
    """A SHA-256 fingerprint as lowercase hex, from 'AB:CD:…' or 'abcd…'."""
    return fingerprint.replace(":", "").lower()


def usable(verify: bool | str, fingerprint: str | None) -> bool:
    """Whether a GET made here checks what the client's would: an explicit CA file or fingerprint, and no proxy."""
    explicit = bool(fingerprint) or isinstance(verify, str)
    return explicit and not any(os.environ.get(name) for name in PROXY_VARIABLES)


def _context(verify: bool | str, fingerprint: str | None) -> ssl.SSLContext:
    if fingerprint:  # the fingerprint is the check, made on the certificate itself: no CA chain, no host name
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=str(verify))


def get_json(url: str, path: str, headers: dict[str, str], *, verify: bool | str, fingerprint: str | None,
             timeout: float, counters: Counters, params: dict[str, Any] | None = None) -> Any | None:
    """The JSON answer of GET <url><path>, or None when not answered here; counted in counters (a failed attempt as a
    retry of the caller's own call)."""
    if not usable(verify, fingerprint):
        return None
    parts = urlsplit(url)
    try:
        context = _context(verify, fingerprint)  # a missing or malformed CA file: the client says so
    except (OSError, ValueError):
        return None
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port or 443, context=context, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.connect()
        if fingerprint:
            der = conn.sock.getpeercert(binary_form=True) or b""
            if hashlib.sha256(der).hexdigest() != fingerprint_hex(fingerprint):
                counters.retried()
                return None  # not the pinned certificate: no credential is sent
        query = f"?{urlencode(params)}" if params else ""
        conn.request("GET", f"{parts.path.rstrip('/')}{path}{query}", headers={**headers, "Accept": "application/json"})
        try:
            response = conn.getresponse()
            body = response.read()
        finally:
            counters.add("GET", time.monotonic() - t0)  # sent: a request, answered or not
        if response.status != 200:
            counters.retried()
            return None
        return json.loads(body)
    except TimeoutError:  # accepted the connection and never answered: final
        raise PhoenixError(f"{url} did not answer GET {path} within {timeout:.0f}s: check that the server is up, "
                           "or raise its timeout") from None
    except (OSError, http.client.HTTPException, ValueError):
        counters.retried()
        return None
    finally:
        conn.close()
