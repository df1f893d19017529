"""One API endpoint serves a whole cluster; when the configured one does not answer, another member's (pure choice,
a TCP connect as the probe: no API request is made to find out).

Every member of a Proxmox cluster answers the whole cluster's API, so a run whose `proxmox.api_url` is down goes on
through the first member of `proxmox.nodes` with an `api_url` that accepts a connection, verified the same way (the
cluster's CA, or that member's own pinned certificate).
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from .endpoint import Endpoint


def connects(url: str, timeout: float) -> bool:
    """Whether the URL's host accepts a TCP connection on its port within the timeout."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "", parts.port or 8006), timeout=timeout).close()
        return True
    except OSError:
        return False


def answering(ep: Endpoint, say: Callable[[str], None], probe: Callable[[str, float], bool] = connects) -> Endpoint:
    """The endpoint to use: the configured one when it accepts a connection (or has no fallback), else the first
    fallback that does (said once), else the configured one (its own request then says what is wrong)."""
    if not ep.fallbacks or ep.simulated:
        return ep
    wait = min(ep.timeout, 5.0)
    if probe(ep.url, wait):
        return ep
    for url, fingerprint, node in ep.fallbacks:
        if probe(url, wait):
            say(f"phoenix: the API at {ep.url} does not answer; using {node}'s at {url} (the cluster's API is the same "
                "on every member)")
            return dataclasses.replace(ep, url=url, fingerprint=fingerprint)
    return ep
