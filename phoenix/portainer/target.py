"""Where the run's Portainer server is and how it is trusted: plain data, kept in the model like the Proxmox endpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PortainerTarget:
    """A Portainer server's API: URL, token file, certificate check, and the admin whose password makes the token."""

    url: str                      # https://host:9443 ("" on the simulated host until the stand-in serves)
    token_file: str               # the API key (X-API-Key), 0600
    verify: bool | str = True     # True: the default CAs; a path: this CA file; False: not checked (the user said so)
    fingerprint: str | None = None
    timeout: float = 30
    admin_user: str = "admin"
    password_file: str | None = None  # the admin password (secrets.portainer_password_file), 0600
    agent_port: int = 9001
    server_guest: int | None = None   # the guest that runs the server, when Phoenix builds it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PortainerTarget:
        return cls(**data)

    def with_address(self, url: str, ca_file: Path) -> PortainerTarget:
        """The same target served elsewhere (the simulated host's stand-in), trusted by its own CA file."""
        return PortainerTarget(**{**asdict(self), "url": url, "verify": str(ca_file), "fingerprint": None})
