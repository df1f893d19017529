"""What a container build needs from the host and the checkout, checked before anything is written (pure).

Each function gets what was read (the node's storages, the secret files' state, …) and returns the problems
that would make the build fail half-way, each saying what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .rules import ID_MAP_BASE, ID_MAP_SIZE

if TYPE_CHECKING:
    from ...config.estate import Estate


def _content(storage: dict[str, Any]) -> set[str]:
    return {c.strip() for c in str(storage.get("content", "")).split(",") if c.strip()}


def storage_problems(estate: Estate, ctid: int, storages: list[dict[str, Any]], *, bake: bool) -> list[str]:
    """The storages the build writes to exist on the node, are enabled, and take that content."""
    g = estate.guests[ctid]
    by_name = {str(s.get("storage")): s for s in storages}
    wanted: list[tuple[str, str, str]] = []  # (storage, content, what for)
    if bake:
        wanted.append((estate.storage(ctid), "rootdir", "its root file system"))
        if g.clone_from_ctid is None:
            volume = estate.os_template(ctid).volume
            wanted.append((volume.split(":", 1)[0], "vztmpl", f"the OS template {volume}"))
    for i, mp in enumerate(g.mount_points):
        if mp.storage:
            wanted.append((mp.storage, "rootdir", f"mount point mp{i} ({mp.container_path})"))
    out = []
    known = ", ".join(sorted(by_name)) or "none"
    for name, content, what in wanted:
        found = by_name.get(name)
        if found is None:
            out.append(f"storage {name!r} (for {what}) does not exist on the node (it has: {known}): fix the config "
                       "or add the storage (Datacenter > Storage)")
        elif str(found.get("enabled", 1)) in ("0", "False") or str(found.get("active", 1)) in ("0", "False"):
            out.append(f"storage {name!r} (for {what}) is not enabled or not active on the node")
        elif content not in _content(found):
            out.append(f"storage {name!r} (for {what}) does not take content '{content}' (it takes: "
                       f"{', '.join(sorted(_content(found))) or 'nothing'}): add it with "
                       f"pvesm set {name} --content {','.join(sorted(_content(found) | {content}))}")
    return out


def script_problems(estate: Estate, ctid: int) -> list[str]:
    """Every script the build runs is still where the config says (the checkout may have changed since)."""
    g, lib = estate.guests[ctid], estate.library
    paths = [lib.lib_path, *(lib.feature_path(n) for n in g.features)]
    if g.application_script:
        paths.append(lib.app_path(g.application_script))
    from .datafiles import missing_problems

    return [f"script {p} does not exist (the checkout changed since the config was validated?)" for p in paths
            if not Path(p).is_file()] + missing_problems(estate, ctid)


def secret_problems(estate: Estate, ctid: int, resolve: Any, *, simulated: bool) -> list[str]:
    """The secrets the build's scripts declare: configured, and 0600 files with a value (read now, then dropped).

    On the simulated host a missing file is fine: the run makes a placeholder."""
    from ...errors import PhoenixError
    from ...secrets import read_secret

    g, lib = estate.guests[ctid], estate.library
    scripts = [lib.feature(n) for n in g.features] + ([lib.app(g.application_script)] if g.application_script else [])
    out: list[str] = []
    for script in scripts:
        for name in (*script.secrets, *script.optional_secrets):
            configured = estate.hypervisor.secrets.file(name)
            if configured is None:
                if name in script.secrets:
                    out.append(f"{script.name} needs the secret {name}: set secrets.{name}_file in {estate.hypervisor_file}")
                continue
            path = resolve(configured)
            if not Path(path).exists() and (simulated or name not in script.secrets):
                continue
            try:
                read_secret(path)
            except PhoenixError as e:
                out.append(str(e))
    return sorted(set(out), key=out.index)


def host_path_problems(estate: Estate, ctid: int, missing: list[str]) -> list[str]:
    """Bind-mounted host directories that are not on the node."""
    from ...transport.shell import q

    g = estate.guests[ctid]
    out = []
    for mp in g.mount_points:
        if mp.host_path and mp.host_path in missing and not mp.create_host_path:
            make = f"mkdir -p {q([mp.host_path])}" + (
                f" && chown {ID_MAP_BASE}:{ID_MAP_BASE} {q([mp.host_path])}" if g.unprivileged else "")
            out.append(f"host directory {mp.host_path} (bind-mounted at {mp.container_path}) does not exist on the node: "
                       f"create it there (`{make}`: the container's root owns it), or set create_host_path: true")
    return out


def owned_binds(estate: Estate, ctid: int) -> list[tuple[str, str]]:
    """(host path, container path) of the bind mounts whose host owner matters: writable, in an unprivileged guest."""
    g = estate.guests[ctid]
    if not g.unprivileged:
        return []  # a privileged container's ids are the host's
    return [(mp.host_path, mp.container_path) for mp in g.mount_points if mp.host_path and not mp.read_only]


def mounted_host_paths(config: dict[str, Any]) -> set[str]:
    """The host paths a guest bind-mounts now: its config's mpN (/host/path,mp=/in/guest,...) and the mount points of
    the settings its layer record says were applied."""
    from ...facts.guests import parse_record

    found = {str(v).split(",", 1)[0] for k, v in config.items()
             if k.startswith("mp") and k[2:].isdigit() and str(v).startswith("/")}
    settings = parse_record(config.get("description")).get("settings") if config else None
    mounts = settings.get("mount_points") if isinstance(settings, dict) else None
    for mp in mounts if isinstance(mounts, list) else []:
        if isinstance(mp, dict) and isinstance(mp.get("host_path"), str):
            found.add(mp["host_path"])
    return found


def bind_owner_problems(estate: Estate, ctid: int, owners: dict[str, Any]) -> tuple[list[str], tuple[str, ...]]:
    """Bind-mounted host directories of an unprivileged guest must be owned by an id of its map (the guest can then
    give them to any of its users; its root is 100000 on the host). Returns the problems (a non-empty directory owned
    outside the map: nothing is changed, the fix is named) and the empty ones to give to the guest's root."""
    from ...transport.shell import q

    low, high = ID_MAP_BASE, ID_MAP_BASE + ID_MAP_SIZE - 1
    problems: list[str] = []
    give: list[str] = []
    for host_path, container_path in owned_binds(estate, ctid):
        found = owners.get(host_path)
        if found is None or (low <= found.uid <= high and low <= found.gid <= high):
            continue
        if found.empty:
            give.append(host_path)
            continue
        problems.append(
            f"host directory {host_path} (bind-mounted at {container_path} in CT {ctid}, an unprivileged container) is "
            f"owned by {found.uid}:{found.gid} on the node, outside the container's id map ({low}-{high}), so the "
            f"container cannot write it. It needs the container's root, {low}:{low} (its app gives it to its own user "
            f"from there). It is not empty, so Phoenix changed nothing: on the node run "
            f"`chown -R {low}:{low} {q([host_path])}`, then rerun")
    return problems, tuple(dict.fromkeys(give))


def backup_storage_problems(estate: Any, storages: list[dict[str, Any]]) -> list[str]:
    """A restore needs the configured backup storage on the node, with content 'backup'."""
    name = estate.hypervisor.artifacts.backup_storage
    found = next((s for s in storages if s.get("storage") == name), None)
    if found is None:
        return [f"backup storage '{name}' (artifacts.backup_storage, to restore from an archive) does not exist on the node"]
    if "backup" not in str(found.get("content") or "").split(","):
        return [f"storage '{name}' (artifacts.backup_storage) does not hold backups: add content 'backup' to it"]
    return []


def docker_host_problems(estate: Estate, ctid: int, lxc_pve_version: str | None) -> list[str]:
    """An unprivileged guest whose scripts run Docker (they declare keyctl) needs a node with a fixed lxc-pve."""
    from ...facts.node import lxc_pve_docker_problem

    g, lib = estate.guests[ctid], estate.library
    if not g.unprivileged:
        return []
    scripts = [lib.feature(n) for n in g.features] + ([lib.app(g.application_script)] if g.application_script else [])
    users = [s.name for s in scripts if "keyctl" in s.requires]
    problem = lxc_pve_docker_problem(lxc_pve_version) if users else None
    return [f"{', '.join(users)}: {problem}"] if problem else []
