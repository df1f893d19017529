"""How to reach a Proxmox API: the one type for it, whether it comes from the config, the simulator or a test.

A run's Endpoint is made from the hypervisor config (`of`); on the simulated host the simulator gives the
address, certificate and token file once it serves. It is plain data (no pydantic, no requests): a run that
only checks layers has it from .cache/ and lists the host with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ..config.hypervisor import HypervisorConfig


@dataclass(frozen=True)
class Endpoint:
    """A node's API: URL, node, token and its file, how the certificate is checked, timeouts and retries."""

    url: str                        # https://host:8006; "" for a simulated host that does not serve yet
    node: str
    token_id: str                   # user@realm!name
    token_file: Path | None = None  # the token's secret, in a 0600 file
    verify: bool | str = True       # True: the default CAs; False: not checked (the user said so); a path: this CA file
    fingerprint: str | None = None  # the certificate's SHA-256, pinned instead of a CA chain
    timeout: float = 30             # one HTTP request
    task_timeout: float = 1800      # one Proxmox task
    retries: int = 4                # of idempotent calls
    clock: float = 1.0              # real seconds per host second (a simulator may run faster)
    simulated: bool = False
    fallbacks: tuple[tuple[str, str | None, str], ...] = ()  # other members' APIs: (url, fingerprint, node), in order
    host: str = field(init=False, compare=False)  # from url, parsed once

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", urlsplit(self.url).hostname or "")

    @property
    def target(self) -> str:
        """What a run says it talks to: "sim", or the node's host name."""
        return "sim" if self.simulated else self.host or "?"

    def secret(self) -> str:
        """The token's secret, read from its 0600 file (a PhoenixError says what is wrong with the file)."""
        from ..errors import PhoenixError
        from ..secrets import read_secret

        if self.token_file is None:
            raise PhoenixError(f"no token file for the API of node {self.node}: set proxmox.token_file")
        return read_secret(self.token_file)

    @classmethod
    def of(cls, hypervisor: HypervisorConfig, config_dir: Path) -> Endpoint:
        """The endpoint the config names, paths resolved against the config dir (simulated: filled in at start)."""
        from ..config.files import resolve

        p = hypervisor.proxmox
        verify: bool | str = str(resolve(config_dir, p.ca_file)) if p.ca_file else p.verify_tls
        fallbacks = tuple((str(n.api_url), n.fingerprint or (p.fingerprint if not p.ca_file else None), n.name)
                          for n in p.nodes or () if n.api_url and n.api_url.rstrip("/") != (p.api_url or "").rstrip("/"))
        return cls(p.api_url or "", p.node, p.token_id, resolve(config_dir, p.token_file) if p.token_file else None,
                   verify=verify, fingerprint=p.fingerprint, timeout=p.timeout_s, task_timeout=p.task_timeout_s,
                   retries=hypervisor.behavior.api_retries, simulated=p.target == "simulated", fallbacks=fallbacks)

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "node": self.node, "token_id": self.token_id,
                "token_file": str(self.token_file) if self.token_file else None, "verify": self.verify,
                "fingerprint": self.fingerprint, "timeout": self.timeout, "task_timeout": self.task_timeout,
                "retries": self.retries, "clock": self.clock, "simulated": self.simulated,
                "fallbacks": [list(f) for f in self.fallbacks]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoint:
        return cls(**{**data, "token_file": Path(data["token_file"]) if data.get("token_file") else None,
                      "fallbacks": tuple(tuple(f) for f in data.get("fallbacks") or ())})

