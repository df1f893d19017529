"""How a run reaches the Proxmox API, as plain data.

ApiSettings: the `proxmox` section of the hypervisor config and the retry count, copied out of the
validated model: this is what a run that only checks layers needs, and it unpickles without pydantic.
Endpoint: the same, resolved for this run (the simulator's address, paths, the token's secret).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config.hypervisor import HypervisorConfig


@dataclass(frozen=True)
class ApiSettings:
    target: str                # "simulated" or "remote"
    api_url: str | None
    node: str
    token_id: str
    token_file: str | None
    verify_tls: bool
    ca_file: str | None
    fingerprint: str | None
    timeout_s: float
    task_timeout_s: float
    retries: int

    @classmethod
    def of(cls, hypervisor: HypervisorConfig) -> ApiSettings:
        p = hypervisor.proxmox
        return cls(p.target, p.api_url, p.node, p.token_id, p.token_file, p.verify_tls, p.ca_file, p.fingerprint,
                   p.timeout_s, p.task_timeout_s, hypervisor.behavior.api_retries)

    @property
    def simulated(self) -> bool:
        return self.target == "simulated"

    @property
    def host(self) -> str:
        """The node's host name, from api_url ("" if there is none)."""
        from urllib.parse import urlsplit

        return urlsplit(self.api_url or "").hostname or ""


@dataclass(frozen=True)
class Endpoint:
    """The API as this run calls it: URL, node, token and secret, how its certificate is checked, timeouts."""

    url: str
    node: str
    token_id: str
    secret: str = field(repr=False)
    verify: bool | str = True   # True: the default CAs; False: not checked (the user said so); a path: this CA file
    fingerprint: str | None = None  # pinned instead of a CA chain
    timeout: float = 30
    task_timeout: float = 1800
    retries: int = 4
    clock: float = 1.0          # real seconds per host second (a simulator may run faster)


def fingerprint_hex(fingerprint: str) -> str:
    """A SHA-256 fingerprint as lowercase hex, from 'AB:CD:…' or 'abcd…'."""
    return fingerprint.replace(":", "").lower()
