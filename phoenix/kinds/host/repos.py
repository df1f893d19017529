"""host:repos: the node's package repositories through the APT repositories API (pure planning of the calls)."""

from __future__ import annotations

from typing import Any

from ...steps import Call, Step

ENTERPRISE = ("pve-enterprise", "enterprise")  # components of Proxmox's enterprise repositories (PVE, Ceph)


def read(ctx: Any) -> dict[str, Any]:
    return dict(ctx.pve().get(f"nodes/{ctx.node}/apt/repositories"))


def steps(cfg: Any, found: dict[str, Any], node: str) -> list[Step]:
    out: list[Step] = []
    path = f"nodes/{node}/apt/repositories"
    if cfg.enterprise is False:
        for f in found.get("files", []):
            for index, repo in enumerate(f.get("repositories", [])):
                if repo.get("Enabled") and any(c in ENTERPRISE for c in repo.get("Components", [])):
                    out.append(Call(f"switch off {f['path']} (enterprise)", "POST", path,
                                    {"path": f["path"], "index": index, "enabled": 0}, idempotent=True))
    if cfg.no_subscription:
        status = next((r.get("status") for r in found.get("standard-repos", []) if r.get("handle") == "no-subscription"), None)
        if status is None:
            out.append(Call("add the no-subscription repository", "PUT", path, {"handle": "no-subscription"}))
        elif not status:
            for f in found.get("files", []):
                for index, repo in enumerate(f.get("repositories", [])):
                    if "pve-no-subscription" in repo.get("Components", []) and not repo.get("Enabled"):
                        out.append(Call(f"switch on {f['path']} (no-subscription)", "POST", path,
                                        {"path": f["path"], "index": index, "enabled": 1}, idempotent=True))
    return out
