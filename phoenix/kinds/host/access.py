"""host:access: Phoenix's own user, a role with exactly the privileges Phoenix uses, ACLs on /, and an API token with
privilege separation whose secret goes to a 0600 file; so nobody needs a root@pam token for the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...config.host import PRIVILEGES
from ...errors import PhoenixError
from ...steps import Call, SaveToken, Step


def read(cfg: Any, ctx: Any, token_file: Path) -> dict[str, Any]:
    pve = ctx.pve()
    users = {u["userid"] for u in pve.get("access/users")}
    roles = {r["roleid"]: set(str(r.get("privs", "")).split(",")) - {""} for r in pve.get("access/roles")}
    tokens = {t["tokenid"] for t in pve.get(f"access/users/{cfg.user}/token")} if cfg.user in users else set()
    acl = {(a["path"], a["type"], a["ugid"], a["roleid"]) for a in pve.get("access/acl")}
    return {"users": users, "roles": roles, "tokens": tokens, "acl": acl, "file_ok": usable(token_file)}


def usable(path: Path) -> bool:
    """The token file is there, 0600 and not empty."""
    from ...secrets import read_secret

    try:
        read_secret(path)
    except PhoenixError:
        return False
    return True


def steps(cfg: Any, found: dict[str, Any], token_file: Path) -> list[Step]:
    out: list[Step] = []
    token = f"{cfg.user}!{cfg.token}"
    if cfg.user not in found["users"]:
        out.append(Call(f"add user {cfg.user}", "POST", "access/users", {"userid": cfg.user, "comment": "Phoenix"}))
    have = found["roles"].get(cfg.role)
    if have is None:
        out.append(Call(f"add role {cfg.role}", "POST", "access/roles", {"roleid": cfg.role, "privs": ",".join(PRIVILEGES)}))
    elif have != set(PRIVILEGES):
        out.append(Call(f"set role {cfg.role} to exactly Phoenix's privileges", "PUT", f"access/roles/{cfg.role}",
                        {"privs": ",".join(PRIVILEGES)}, idempotent=True))
    if ("/", "user", cfg.user, cfg.role) not in found["acl"]:
        out.append(Call(f"grant {cfg.role} on / to {cfg.user}", "PUT", "access/acl",
                        {"path": "/", "roles": cfg.role, "users": cfg.user}, idempotent=True))
    exists = cfg.token in found["tokens"]
    if not exists or not found["file_ok"]:
        out.append(SaveToken(f"make token {token} (its secret to {token_file}, 0600)", cfg.user, cfg.token, token_file,
                             replace=exists))
    if ("/", "token", token, cfg.role) not in found["acl"] or not exists:
        out.append(Call(f"grant {cfg.role} on / to token {token}", "PUT", "access/acl",
                        {"path": "/", "roles": cfg.role, "tokens": token}, idempotent=True))
    return out
