"""HA resources on the simulated cluster: `/cluster/ha/resources`, kept as state (fakepve only stubs the routes).

The rules follow pve-ha-manager's API (PVE/API2/HA/Resources.pm) where Phoenix depends on them: a resource is a guest
(`ct:<vmid>` or `vm:<vmid>`, a bare VMID is read as the guest it names), defined once ("service 'ct:950' already
defined"), with a requested state (started, stopped, enabled, disabled, ignored) and the group, max_restart,
max_relocate and comment kept as given; the guest's `hastate` in /cluster/resources is that state. Removing the
guest with `purge` removes its resource, as PVE does; without it PVE refuses to destroy an HA guest.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

STATES = ("started", "stopped", "enabled", "disabled", "ignored")
KEYS = ("state", "group", "max_restart", "max_relocate", "comment", "failback")


class HaApi:
    """Mixin of the simulator's FakePve subclass: the HA resources table."""

    node_state: dict[str, Any]

    def _routes_ha(self) -> list[tuple[str, str, Any]]:
        one = "/cluster/ha/resources/{sid}"
        return [("GET", "/cluster/ha/resources", self._ha_list), ("POST", "/cluster/ha/resources", self._ha_create),
                ("GET", one, self._ha_read), ("PUT", one, self._ha_update), ("DELETE", one, self._ha_delete)]

    def _ha(self) -> dict[str, dict[str, Any]]:
        """The table, without the resources of guests destroyed with purge (PVE removes them with the guest)."""
        table: dict[str, dict[str, Any]] = self.node_state.setdefault("ha", {})
        this: Any = self
        for sid in list(table):
            kind, _, vmid = sid.partition(":")
            if (this.ct(int(vmid)) if kind == "ct" else this.vm(int(vmid))) is None:
                del table[sid]
        return table

    def _ha_sid(self, value: Any) -> tuple[str, Any]:
        """The resource id and its guest: `ct:950`, `vm:1002`, or a VMID alone."""
        from fakepve.model import PveError

        text = str(value)
        kind, _, vmid = text.rpartition(":")
        this: Any = self
        guest = this.ct(int(vmid)) if vmid.isdigit() and kind in ("", "ct") else None
        if guest is None and vmid.isdigit() and kind in ("", "vm"):
            guest = this.vm(int(vmid))
        if guest is None:
            raise PveError(500, f"no such VM or CT '{text}'" if vmid.isdigit() else f"invalid service id '{text}'")
        return f"{'ct' if this.ct(guest.vmid) is guest else 'vm'}:{guest.vmid}", guest

    def ha_apply(self) -> None:
        """Each guest's HA state as the table has it (after the state is loaded)."""
        this: Any = self
        for sid, conf in self._ha().items():
            kind, _, vmid = sid.partition(":")
            guest = this.ct(int(vmid)) if kind == "ct" else this.vm(int(vmid))
            if guest is not None:
                guest.ha_state = conf.get("state", "started")

    async def _ha_list(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        return [self._ha_view(sid, conf) for sid, conf in sorted(self._ha().items())]

    def _ha_view(self, sid: str, conf: dict[str, Any]) -> dict[str, Any]:
        digest = hashlib.sha1(json.dumps(self._ha(), sort_keys=True).encode()).hexdigest()
        return {"sid": sid, "type": sid.split(":")[0], "digest": digest, **conf}

    async def _ha_read(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        from fakepve.model import PveError

        sid, _ = self._ha_sid(v["sid"])
        if sid not in self._ha():
            raise PveError(500, f"no such resource '{sid}'")
        return self._ha_view(sid, self._ha()[sid])

    def _ha_values(self, v: dict[str, Any]) -> dict[str, Any]:
        from fakepve.model import PveError

        out = {k: v[k] for k in KEYS if v.get(k) not in (None, "")}
        if out.get("state", "started") not in STATES:
            raise PveError(400, "Parameter verification failed.", {"state": f"value '{out['state']}' does not have a "
                                                                             "value in the enumeration"})
        return out

    async def _ha_create(self, v: dict[str, Any], user: str) -> None:
        from fakepve.model import PveError

        this: Any = self
        this.need_quorum()
        sid, guest = self._ha_sid(v["sid"])
        if sid in self._ha():
            raise PveError(500, f"service '{sid}' already defined")
        conf = {"state": "started", "max_restart": 1, "max_relocate": 1, **self._ha_values(v)}
        self._ha()[sid] = conf
        guest.ha_state = conf["state"]

    async def _ha_update(self, v: dict[str, Any], user: str) -> None:
        from fakepve.model import PveError

        this: Any = self
        this.need_quorum()
        sid, guest = self._ha_sid(v["sid"])
        if sid not in self._ha():
            raise PveError(500, f"no such resource '{sid}'")
        self._ha()[sid].update(self._ha_values(v))
        guest.ha_state = self._ha()[sid].get("state", "started")

    async def _ha_delete(self, v: dict[str, Any], user: str) -> None:
        from fakepve.model import PveError

        this: Any = self
        this.need_quorum()
        sid, guest = self._ha_sid(v["sid"])
        if self._ha().pop(sid, None) is None:
            raise PveError(500, f"no such resource '{sid}'")
        guest.ha_state = None
