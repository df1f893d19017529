"""The node-wide API parts fakepve only stubs, kept as state by Phoenix's simulated host: what `host:*` sets up.

fakepve checks these calls against the PVE 9 schema and then answers with made-up data, keeping nothing. Host
set-up must be idempotent and read back what it wrote, so the simulator keeps: the node's notes
(`/nodes/{node}/config` description, with its digest), its network interfaces (staged changes applied by
`PUT /nodes/{node}/network`, as PVE stages /etc/network/interfaces.new), users, API tokens (a secret returned
once), roles and ACLs (`/access/*`; kept as data: fakepve's own permission checks are unaffected), the APT
repositories (`/nodes/{node}/apt/repositories`) and the disks (`/nodes/{node}/disks/*`, a ZFS pool or LVM-thin
made on an unused disk adds its storage). The rules follow pve-manager's handlers (PVE/API2/Network.pm,
AccessControl/*.pm, APT/Repositories.pm, Disks/*.pm) where the answers matter to Phoenix, not further.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import hashlib
import secrets
import uuid
from collections import ChainMap
from typing import Any

STATE_VERSION = 1
BUILTIN_ROLES = {
    "Administrator": ["Sys.Audit", "Sys.Modify", "VM.Allocate", "VM.Audit", "Datastore.Allocate", "Pool.Allocate",
                      "Permissions.Modify", "User.Modify"],
    "PVEAuditor": ["Sys.Audit", "VM.Audit", "Datastore.Audit", "Pool.Audit"],
    "NoAccess": [],
}
SIMULATED_DISKS = [
    {"devpath": "/dev/sda", "type": "ssd", "size": 512 * 1024 ** 3, "used": "LVM", "gpt": 1, "model": "SIM-OS"},
    {"devpath": "/dev/sdb", "type": "ssd", "size": 2048 * 1024 ** 3, "used": None, "gpt": 0, "model": "SIM-DATA"},
]
SIMULATED_NETWORK = {
    "eno1": {"type": "eth", "active": 1, "autostart": 1},
    "vmbr0": {"type": "bridge", "active": 1, "autostart": 1, "bridge_ports": "eno1", "cidr": "127.0.0.1/8",
              "address": "127.0.0.1", "netmask": "8", "comments": "the management bridge (carries the API's address)"},
}
SIMULATED_APT = [
    {"path": "/etc/apt/sources.list.d/pve-enterprise.sources", "file-type": "sources",
     "repositories": [{"Types": ["deb"], "URIs": ["https://enterprise.proxmox.com/debian/pve"], "Suites": ["trixie"],
                       "Components": ["pve-enterprise"], "Enabled": 1, "FileType": "sources"}]},
    {"path": "/etc/apt/sources.list.d/debian.sources", "file-type": "sources",
     "repositories": [{"Types": ["deb"], "URIs": ["http://deb.debian.org/debian"], "Suites": ["trixie"],
                       "Components": ["main", "contrib"], "Enabled": 1, "FileType": "sources"}]},
]
STANDARD_REPOS = {  # handle -> (components, URI), PVE 9 on Debian trixie
    "enterprise": ("pve-enterprise", "https://enterprise.proxmox.com/debian/pve"),
    "no-subscription": ("pve-no-subscription", "http://download.proxmox.com/debian/pve"),
    "test": ("pvetest", "http://download.proxmox.com/debian/pve"),
}
NETWORK_KEYS = ("type", "bridge_ports", "bridge_vlan_aware", "bridge_vids", "cidr", "address", "netmask", "gateway",
                "autostart", "comments", "mtu")


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def initial_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "description": "", "network": copy.deepcopy(SIMULATED_NETWORK), "pending": None,
            "users": {"root@pam": {"enable": 1, "comment": "the superuser", "tokens": {}}},
            "roles": copy.deepcopy(BUILTIN_ROLES), "acl": [], "apt": copy.deepcopy(SIMULATED_APT),
            "disks": copy.deepcopy(SIMULATED_DISKS)}


PER_NODE = ("description", "network", "pending", "apt", "disks")  # each member's own; users, roles, ACLs are the cluster's
_MEMBER: contextvars.ContextVar[str | None] = contextvars.ContextVar("sim_member", default=None)


def member_state() -> dict[str, Any]:
    """What a member other than the first starts with: as the first did."""
    return {k: v for k, v in initial_state().items() if k in PER_NODE}


def _errors(pve_error: Any, **fields: str) -> Any:
    return pve_error(400, "Parameter verification failed.", fields)


class NodeApi:
    """Mixin of the simulator's FakePve subclass: the `_routes_node` table and its handlers.

    On a cluster each member has its own notes, network, APT repositories and disks (kept under the state's
    `members`; the first member's at the top, as on one node); users, roles and ACLs are the cluster's."""

    nodes: dict[str, Any]

    @property
    def node_state(self) -> Any:
        base: dict[str, Any] = self.__dict__["_node_state"]
        node = _MEMBER.get()
        if node is None or node == next(iter(self.nodes)):
            return base
        own = base.setdefault("members", {}).setdefault(node, member_state())
        return ChainMap(own, base)

    @node_state.setter
    def node_state(self, value: dict[str, Any]) -> None:
        self.__dict__["_node_state"] = value

    def whole_state(self) -> dict[str, Any]:
        """The state of every member, as it is saved (whichever member a request is about)."""
        out: dict[str, Any] = self.__dict__["_node_state"]
        return out

    def member_state(self, node: str) -> Any:
        """The state as the member `node` has it (tests read a member's network, notes, ...)."""
        token = _MEMBER.set(node)
        try:
            return self.node_state
        finally:
            _MEMBER.reset(token)

    def _routes_node(self) -> list[tuple[str, str, Any]]:
        n = "/nodes/{node}"
        u = "/access/users/{userid}"

        def on_member(handler: Any) -> Any:
            @functools.wraps(handler)
            async def served(v: dict[str, Any], user: str) -> Any:
                token = _MEMBER.set(str(v.get("node") or "") or None)
                try:
                    return await handler(v, user)
                finally:
                    _MEMBER.reset(token)
            return served

        routes = self._node_routes(n, u)
        return [(m, path, on_member(h) if path.startswith(n) else h) for m, path, h in routes]

    def _node_routes(self, n: str, u: str) -> list[tuple[str, str, Any]]:
        return [
            ("GET", n + "/config", self._nc_get), ("PUT", n + "/config", self._nc_put),
            ("GET", n + "/network", self._net_list), ("POST", n + "/network", self._net_create),
            ("PUT", n + "/network", self._net_apply), ("DELETE", n + "/network", self._net_revert),
            ("GET", n + "/network/{iface}", self._net_read), ("PUT", n + "/network/{iface}", self._net_update),
            ("DELETE", n + "/network/{iface}", self._net_delete),
            ("GET", "/access/users", self._users), ("POST", "/access/users", self._user_create),
            ("GET", u, self._user_read), ("DELETE", u, self._user_delete),
            ("GET", u + "/token", self._tokens), ("GET", u + "/token/{tokenid}", self._token_read),
            ("POST", u + "/token/{tokenid}", self._token_create), ("DELETE", u + "/token/{tokenid}", self._token_delete),
            ("GET", "/access/roles", self._roles), ("POST", "/access/roles", self._role_create),
            ("GET", "/access/roles/{roleid}", self._role_read), ("PUT", "/access/roles/{roleid}", self._role_update),
            ("GET", "/access/acl", self._acl), ("PUT", "/access/acl", self._acl_update),
            ("GET", n + "/apt/repositories", self._apt), ("PUT", n + "/apt/repositories", self._apt_add),
            ("POST", n + "/apt/repositories", self._apt_change),
            ("GET", n + "/disks/list", self._disks), ("POST", n + "/disks/zfs", self._disk_zfs),
            ("POST", n + "/disks/lvmthin", self._disk_lvmthin),
        ]

    # ------------------------------------------------------------ helpers

    def _die(self, message: str) -> Exception:
        from fakepve.routing import die

        return die(message)

    # ------------------------------------------------------------ node config (notes)

    async def _nc_get(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        desc = self.node_state["description"]
        out = {"digest": sha1(desc)}
        if desc:
            out["description"] = desc
        prop = v.get("property")
        return {prop: out[prop]} if prop in out else out if prop is None else {}

    async def _nc_put(self, v: dict[str, Any], user: str) -> None:
        from fakepve.routing import check_digest, split_list

        check_digest(sha1(self.node_state["description"]), v.get("digest"))
        if "description" in split_list(v.get("delete")):
            self.node_state["description"] = ""
        if v.get("description") is not None:
            self.node_state["description"] = str(v["description"])

    # ------------------------------------------------------------ network

    def _staged(self) -> dict[str, Any]:
        if self.node_state["pending"] is None:
            self.node_state["pending"] = copy.deepcopy(self.node_state["network"])
        return self.node_state["pending"]

    def _iface_view(self, name: str, conf: dict[str, Any]) -> dict[str, Any]:
        out = {"iface": name, "families": ["inet"], "method": "static" if conf.get("cidr") else "manual",
               "priority": 1, **{k: v for k, v in conf.items() if v is not None}}
        return out

    async def _net_list(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        view = self.node_state["pending"] or self.node_state["network"]
        kind = v.get("type")
        out = []
        for name, conf in sorted(view.items()):
            if kind in (None, "any_bridge", "any_local_bridge") and kind and conf.get("type") != "bridge":
                continue
            if kind not in (None, "any_bridge", "any_local_bridge") and conf.get("type") != kind:
                continue
            item = self._iface_view(name, conf)
            if self.node_state["pending"] is not None and self.node_state["network"].get(name) != conf:
                item["changes"] = "pending: apply with PUT /nodes/{node}/network"
            out.append(item)
        return out

    async def _net_read(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        view = self.node_state["pending"] or self.node_state["network"]
        if v["iface"] not in view:
            raise self._die(f"interface '{v['iface']}' does not exist")
        return self._iface_view(v["iface"], view[v["iface"]])

    def _net_values(self, v: dict[str, Any]) -> dict[str, Any]:
        out = {k: v[k] for k in NETWORK_KEYS if k in v}
        if "cidr" in out:
            address, _, prefix = str(out["cidr"]).partition("/")
            out.update(address=address, netmask=prefix)
        for flag in ("bridge_vlan_aware", "autostart"):
            if flag in out:
                out[flag] = int(bool(out[flag]))
        return out

    async def _net_create(self, v: dict[str, Any], user: str) -> None:
        staged = self._staged()
        if v["iface"] in staged:
            raise self._die(f"interface already exists: {v['iface']}")
        if v.get("type") == "bridge":
            for port in str(v.get("bridge_ports") or "").split():
                used = [n for n, c in staged.items() if port in str(c.get("bridge_ports") or "").split()]
                if used:
                    raise self._die(f"bridge port '{port}' is already used on interface '{used[0]}'")
        staged[v["iface"]] = {**self._net_values(v), "active": 0}

    async def _net_update(self, v: dict[str, Any], user: str) -> None:
        from fakepve.routing import split_list

        staged = self._staged()
        conf = staged.get(v["iface"])
        if conf is None:
            raise self._die(f"interface '{v['iface']}' does not exist")
        if v.get("type") and v["type"] != conf.get("type"):
            raise self._die(f"interface type mismatch: {conf.get('type')} != {v['type']}")
        for key in split_list(v.get("delete")):
            conf.pop(key, None)
        conf.update(self._net_values(v))

    async def _net_delete(self, v: dict[str, Any], user: str) -> None:
        staged = self._staged()
        if staged.pop(v["iface"], None) is None:
            raise self._die(f"interface '{v['iface']}' does not exist")

    async def _net_revert(self, v: dict[str, Any], user: str) -> None:
        self.node_state["pending"] = None

    async def _net_apply(self, v: dict[str, Any], user: str) -> str:
        state = self.node_state

        async def body() -> str | None:
            if state["pending"] is not None:
                state["network"] = {name: {**conf, "active": 1} for name, conf in state["pending"].items()}
                state["pending"] = None
            return "reloaded the network configuration"
        return await self.task(v["node"], "srvreload", "networking", user, body)  # type: ignore[attr-defined]

    # ------------------------------------------------------------ access

    def _user(self, userid: str) -> dict[str, Any]:
        found = self.node_state["users"].get(userid)
        if found is None:
            raise self._die(f"no such user ('{userid}')")
        return found

    async def _users(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        return [{"userid": uid, "enable": u.get("enable", 1), "comment": u.get("comment", "")}
                for uid, u in sorted(self.node_state["users"].items())]

    async def _user_create(self, v: dict[str, Any], user: str) -> None:
        if v["userid"] in self.node_state["users"]:
            raise self._die(f"create user failed: user '{v['userid']}' already exists")
        self.node_state["users"][v["userid"]] = {"enable": int(v.get("enable", 1)), "comment": v.get("comment", ""),
                                                 "tokens": {}}

    async def _user_read(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        u = self._user(v["userid"])
        return {"enable": u.get("enable", 1), "comment": u.get("comment", ""),
                "tokens": {t: {"privsep": d["privsep"], "comment": d.get("comment", "")} for t, d in u["tokens"].items()}}

    async def _user_delete(self, v: dict[str, Any], user: str) -> None:
        self._user(v["userid"])
        del self.node_state["users"][v["userid"]]
        self.node_state["acl"] = [a for a in self.node_state["acl"] if not a["ugid"].startswith(v["userid"])]

    async def _tokens(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        return [{"tokenid": t, "privsep": d["privsep"], "comment": d.get("comment", "")}
                for t, d in sorted(self._user(v["userid"])["tokens"].items())]

    async def _token_read(self, v: dict[str, Any], user: str) -> dict[str, Any]:  # never the value, as PVE
        token = self._user(v["userid"])["tokens"].get(v["tokenid"])
        if token is None:
            raise self._die(f"no such token '{v['tokenid']}' for user '{v['userid']}'")
        return {"privsep": token["privsep"], "comment": token.get("comment", ""), "expire": token.get("expire", 0)}

    async def _token_create(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        u = self._user(v["userid"])
        if v["tokenid"] in u["tokens"]:
            raise self._die("Token already exists.")
        value = str(uuid.UUID(bytes=secrets.token_bytes(16)))
        u["tokens"][v["tokenid"]] = {"privsep": int(v.get("privsep", 1)), "comment": v.get("comment", ""),
                                     "expire": int(v.get("expire", 0)), "value": value}  # a simulated secret, kept so
        # that the token still works when the simulator restarts (its state dir is the user's own, like .cache/)
        full = f"{v['userid']}!{v['tokenid']}"
        self.apitokens[full] = value  # type: ignore[attr-defined]  # the token works against this simulator
        return {"full-tokenid": full, "value": value,
                "info": {"privsep": int(v.get("privsep", 1)), "comment": v.get("comment", "")}}

    async def _token_delete(self, v: dict[str, Any], user: str) -> None:
        u = self._user(v["userid"])
        if u["tokens"].pop(v["tokenid"], None) is None:
            raise self._die(f"no such token '{v['tokenid']}' for user '{v['userid']}'")
        full = f"{v['userid']}!{v['tokenid']}"
        self.apitokens.pop(full, None)  # type: ignore[attr-defined]
        self.node_state["acl"] = [a for a in self.node_state["acl"] if a["ugid"] != full]

    async def _roles(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        return [{"roleid": r, "privs": ",".join(sorted(p)), "special": int(r in BUILTIN_ROLES)}
                for r, p in sorted(self.node_state["roles"].items())]

    async def _role_read(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        privs = self.node_state["roles"].get(v["roleid"])
        if privs is None:
            raise self._die(f"role '{v['roleid']}' does not exist")
        return dict.fromkeys(sorted(privs), 1)

    async def _role_create(self, v: dict[str, Any], user: str) -> None:
        from fakepve.routing import split_list

        if v["roleid"] in self.node_state["roles"]:
            raise self._die(f"role '{v['roleid']}' already exists")
        self.node_state["roles"][v["roleid"]] = sorted(set(split_list(v.get("privs"))))

    async def _role_update(self, v: dict[str, Any], user: str) -> None:
        from fakepve.routing import split_list

        if v["roleid"] not in self.node_state["roles"]:
            raise self._die(f"role '{v['roleid']}' does not exist")
        if v["roleid"] in BUILTIN_ROLES:
            raise self._die(f"cannot modify role '{v['roleid']}'")
        new = set(split_list(v.get("privs")))
        old = set(self.node_state["roles"][v["roleid"]]) if v.get("append") else set()
        self.node_state["roles"][v["roleid"]] = sorted(old | new)

    async def _acl(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        return [dict(a) for a in self.node_state["acl"]]

    async def _acl_update(self, v: dict[str, Any], user: str) -> None:
        from fakepve.routing import split_list

        roles = split_list(v.get("roles"))
        for role in roles:
            if role not in self.node_state["roles"]:
                raise self._die(f"role '{role}' does not exist")
        subjects = [("user", s) for s in split_list(v.get("users"))] + [("token", s) for s in split_list(v.get("tokens"))] \
            + [("group", s) for s in split_list(v.get("groups"))]
        acl = self.node_state["acl"]
        for kind, ugid in subjects:
            for role in roles:
                entry = {"path": v["path"], "type": kind, "ugid": ugid, "roleid": role, "propagate": int(v.get("propagate", 1))}
                acl[:] = [a for a in acl if (a["path"], a["type"], a["ugid"], a["roleid"]) != (v["path"], kind, ugid, role)]
                if not v.get("delete"):
                    acl.append(entry)

    # ------------------------------------------------------------ APT repositories

    def _apt_digest(self) -> str:
        return sha1(repr(self.node_state["apt"]))

    async def _apt(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        handles = []
        for handle, (component, _uri) in STANDARD_REPOS.items():
            found = [(f["path"], i) for f in self.node_state["apt"] for i, r in enumerate(f["repositories"])
                     if component in r["Components"]]
            status = next((self._repo(p, i)["Enabled"] for p, i in found), None)
            handles.append({"handle": handle, "name": component, "status": status})
        return {"digest": self._apt_digest(), "files": copy.deepcopy(self.node_state["apt"]), "errors": [], "infos": [],
                "standard-repos": handles}

    def _repo(self, path: str, index: int) -> dict[str, Any]:
        for f in self.node_state["apt"]:
            if f["path"] == path:
                if 0 <= index < len(f["repositories"]):
                    return f["repositories"][index]
                raise self._die(f"index '{index}' not found in '{path}'")
        raise self._die(f"unable to parse file '{path}' - not found")

    async def _apt_change(self, v: dict[str, Any], user: str) -> None:
        from fakepve.routing import check_digest

        check_digest(self._apt_digest(), v.get("digest"))
        repo = self._repo(v["path"], int(v["index"]))
        if v.get("enabled") is not None:
            repo["Enabled"] = int(bool(v["enabled"]))

    async def _apt_add(self, v: dict[str, Any], user: str) -> None:
        from fakepve.routing import check_digest

        check_digest(self._apt_digest(), v.get("digest"))
        if v["handle"] not in STANDARD_REPOS:
            raise self._die(f"unknown handle '{v['handle']}'")
        component, uri = STANDARD_REPOS[v["handle"]]
        for f in self.node_state["apt"]:
            for r in f["repositories"]:
                if component in r["Components"]:
                    if r["Enabled"]:
                        raise self._die(f"standard repository '{v['handle']}' is already configured")
                    r["Enabled"] = 1
                    return
        self.node_state["apt"].append({"path": "/etc/apt/sources.list.d/proxmox.sources", "file-type": "sources",
                                       "repositories": [{"Types": ["deb"], "URIs": [uri], "Suites": ["trixie"],
                                                         "Components": [component], "Enabled": 1,
                                                         "FileType": "sources"}]})

    # ------------------------------------------------------------ disks

    async def _disks(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        out = []
        for d in self.node_state["disks"]:
            if v.get("type") == "unused" and d.get("used"):
                continue
            out.append({"devpath": d["devpath"], "type": d.get("type", "hdd"), "size": d.get("size", 0), "gpt": d.get("gpt", 0),
                        "model": d.get("model", ""), "serial": d["devpath"].rsplit("/", 1)[-1], "health": "PASSED",
                        "vendor": "SIM", "wwn": "unknown", "osdid": -1, "osdid-list": None, "rpm": 0, "by_id_link": "",
                        "mounted": 0, **({"used": d["used"]} if d.get("used") else {})})
        return out

    def _take_disk(self, devpath: str, use: str) -> None:
        disk = next((d for d in self.node_state["disks"] if d["devpath"] == devpath), None)
        if disk is None:
            raise self._die(f"unable to get device info for '{devpath}'")
        if disk.get("used"):
            raise self._die(f"{devpath} is already in use ({disk['used']})")
        disk["used"] = use

    async def _make_pool(self, v: dict[str, Any], user: str, kind: str, device: str, storage: dict[str, Any]) -> str:
        self._take_disk(device, "ZFS" if kind == "zfspool" else "LVM")
        if v.get("add_storage"):
            if v["name"] in self.storages:  # type: ignore[attr-defined]
                raise self._die(f"storage ID '{v['name']}' already defined")
            self.storages[v["name"]] = {"type": kind, "active": 1, "files": set(), "volumes": {}, **storage}  # type: ignore[attr-defined]

        async def body() -> str | None:
            return f"created {kind} {v['name']} on {device}"
        return await self.task(v["node"], kind, v["name"], user, body)  # type: ignore[attr-defined]

    async def _disk_zfs(self, v: dict[str, Any], user: str) -> str:
        from fakepve.routing import split_list

        devices = split_list(v.get("devices"))
        if len(devices) != 1 or v.get("raidlevel", "single") != "single":
            raise self._die("the simulated host makes single-disk pools only")
        return await self._make_pool(v, user, "zfspool", devices[0],
                                     {"pool": v["name"], "content": "images,rootdir", "sparse": 1})

    async def _disk_lvmthin(self, v: dict[str, Any], user: str) -> str:
        return await self._make_pool(v, user, "lvmthin", v["device"],
                                     {"vgname": v["name"], "thinpool": v["name"], "content": "images,rootdir"})
