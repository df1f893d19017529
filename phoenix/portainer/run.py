"""A run's side of Portainer (phoenix.runtime.Run): where the server is, the run's one listing, and a client with
Phoenix's token. Reads the run's model and settings; the listing is the only request it makes on its own."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..errors import PhoenixError

if TYPE_CHECKING:
    from .client import Portainer
    from .listing import Listing
    from .target import PortainerTarget


class PortainerSide:
    """The Portainer server of one run; its requests are counted in the run's portainer_counters."""

    def __init__(self, run: Any):
        self.run = run

    @cached_property
    def target(self) -> PortainerTarget:
        """The Portainer server stacks are deployed through; on the simulated host, the stand-in it serves."""
        from ..kinds.portainer.resources import SERVER
        from .target import PortainerTarget

        run = self.run
        res = run.resources.get(SERVER)
        if res is None:
            raise PhoenixError("this estate has no Portainer server (no guest chooses docker_stacks)")
        tgt = PortainerTarget.from_json(dict(res.settings["target"]))
        if run.simulated:
            from ..sim.served import portainer_address

            run.endpoint  # noqa: B018 - the simulator serves the stand-in
            found = portainer_address(run.cache / "sim")
            if found is None:
                raise PhoenixError("the simulated host serves no Portainer stand-in (restart `python -m phoenix.sim`)")
            tgt = tgt.with_address(*found)
        elif not tgt.url:
            raise PhoenixError(f"where is Portainer? CT {tgt.server_guest} has no static address: set portainer_api.url "
                               "in the hypervisor config")
        return tgt

    def listing(self) -> Listing | None:
        """The run's one Portainer listing (GET /api/stacks), or None when the estate has no stacks."""
        from ..kinds.portainer.resources import SERVER

        if SERVER not in self.run.resources:
            return None
        from .listing import read

        return read(self.target, self.run.portainer_counters)

    def client(self) -> Portainer:
        """A client of the Portainer server with Phoenix's token (made anew: the token may have been made just now)."""
        from .client import Portainer
        from .listing import token

        tgt = self.target
        return Portainer(tgt.url, key=token(tgt), verify=tgt.verify, fingerprint=tgt.fingerprint, timeout=tgt.timeout,
                         counters=self.run.portainer_counters)

    def admin_password(self) -> str:
        """The Portainer admin password (a placeholder on the simulated host)."""
        return str(self.run.secrets(("portainer_password",), ("portainer_password",))["portainer_password"])
