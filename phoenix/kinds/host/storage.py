"""host:storage: the storages the estate needs and their content types; pools made on raw disks only when declared,
only on a disk that holds nothing, and only with the disk named twice in the config."""

from __future__ import annotations

from typing import Any

from ...steps import Call, Step

OPTIONS = {"dir": ("path",), "lvmthin": ("vgname", "thinpool"), "zfspool": ("pool",)}


def read(cfg: Any, ctx: Any) -> dict[str, Any]:
    found = {"storages": {s["storage"]: s for s in ctx.pve().get("storage")}}
    if cfg.new_disks:
        found["disks"] = {d["devpath"]: d for d in ctx.pve().get(f"nodes/{ctx.node}/disks/list")}
    return found


def contents(value: Any) -> set[str]:
    return {c.strip() for c in str(value or "").split(",") if c.strip()}


def problems(cfg: Any, found: dict[str, Any]) -> list[str]:
    out = []
    have = found["storages"]
    for disk in cfg.new_disks:
        if disk.name in have:
            continue  # made already: it is a storage now
        seen = found["disks"].get(disk.device)
        if seen is None:
            out.append(f"disk {disk.device} is not on the node (it has: {', '.join(sorted(found['disks'])) or 'none'})")
        elif seen.get("used"):
            out.append(f"disk {disk.device} is in use ({seen['used']}): Phoenix makes a pool only on a disk that holds "
                       "nothing; choose another disk or empty this one yourself")
    for spec in cfg.storages:
        existing = have.get(spec.id)
        if existing is not None and existing.get("type") != spec.type:
            out.append(f"storage {spec.id!r} exists on the node as a {existing.get('type')} storage, not {spec.type}: "
                       "Phoenix does not change a storage's type; fix the config or the storage")
    return out


def steps(cfg: Any, found: dict[str, Any], node: str) -> list[Step]:
    out: list[Step] = []
    have = found["storages"]
    for disk in cfg.new_disks:
        if disk.name in have:
            continue
        if disk.kind == "zfs":
            out.append(Call(f"make ZFS pool {disk.name} on {disk.device}", "POST", f"nodes/{node}/disks/zfs",
                            {"name": disk.name, "devices": disk.device, "raidlevel": "single", "add_storage": 1}))
        else:
            out.append(Call(f"make LVM-thin pool {disk.name} on {disk.device}", "POST", f"nodes/{node}/disks/lvmthin",
                            {"name": disk.name, "device": disk.device, "add_storage": 1}))
        out.append(Call(f"set the content of {disk.name}", "PUT", f"storage/{disk.name}",
                        {"content": ",".join(disk.content)}, idempotent=True))
    for spec in cfg.storages:
        existing = have.get(spec.id)
        if existing is None:
            params = {"storage": spec.id, "type": spec.type, "content": ",".join(spec.content),
                      **{k: getattr(spec, k) for k in OPTIONS[spec.type]}}
            out.append(Call(f"add storage {spec.id}", "POST", "storage", params))
        elif contents(existing.get("content")) != set(spec.content):
            out.append(Call(f"set the content of {spec.id} to {','.join(spec.content)}", "PUT", f"storage/{spec.id}",
                            {"content": ",".join(spec.content)}, idempotent=True))
    return out


def pending(ctx: Any) -> bool:
    """host:storage is declared and not set up as configured: this run sets it up before any guest."""
    from . import resources as R

    res = R.resources(ctx.estate).get(R.key("storage"))
    if res is None:
        return False
    return (ctx.view.host_record(res.place["node"]).get(res.key) or {}).get("identity") != res.identity(None)


def as_set_up(estate: Any, storages: list[dict[str, Any]], pending: bool) -> list[dict[str, Any]]:
    """The node's storage listing as host:storage leaves it (pure), when this run sets it up (pending): a declared
    storage takes exactly its declared content types, one not there yet (or a pool made on a new disk) is added. Every
    guest is built after host:storage, so its checks read this: a first run on a fresh node is not refused for what
    host:storage sets up before it. When host:storage is up to date the listing is the truth (a change by hand since
    is refused by the guest's own check, before anything is written)."""
    host = estate.hypervisor.host
    cfg = host.storage if host is not None else None
    if cfg is None or not pending:
        return storages
    declared: dict[str, dict[str, Any]] = {
        d.name: {"type": "zfspool" if d.kind == "zfs" else "lvmthin", "content": ",".join(d.content)}
        for d in cfg.new_disks}
    declared.update({s.id: {"type": s.type, "content": ",".join(s.content), **({"path": s.path} if s.path else {})}
                     for s in cfg.storages})
    out = []
    for found in storages:
        name = str(found.get("storage"))
        out.append({**found, "content": declared.pop(name)["content"]} if name in declared else found)
    return out + [{"storage": name, "enabled": 1, "active": 1, **spec} for name, spec in declared.items()]
