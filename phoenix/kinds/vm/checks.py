"""Checks of the storages a VM build needs, from the cluster's storage config (pure)."""

from __future__ import annotations

from typing import Any


def _find(storages: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((s for s in storages if s.get("storage") == name), None)


def content_fix(store: dict[str, Any], wanted: set[str]) -> str:
    """One `pvesm set` that keeps the storage's content types and adds every one wanted (`--content` replaces the
    list, so two commands of one type each would switch the first off again)."""
    have = [c for c in str(store.get("content", "")).split(",") if c]
    return f"pvesm set {store.get('storage')} --content {','.join([*have, *sorted(wanted - set(have))])}"


def content_problem(storages: list[dict[str, Any]], name: str, content: str, what: str,
                    also: frozenset[str] = frozenset()) -> list[str]:
    """The storage exists and takes `content`; also: the other content types this build needs of the same storage,
    so that the fix suggested adds them all at once."""
    store = _find(storages, name)
    if store is None:
        return [f"storage {name} (for {what}) does not exist on the node: define it, or name another storage"]
    if content not in str(store.get("content", "")).split(","):
        return [f"storage {name} does not allow '{content}' content, which {what} needs: add it "
                f"({content_fix(store, {content, *also})}, or in Datacenter > Storage)"]
    return []


def snippets_dir(storages: list[dict[str, Any]], name: str,
                 also: frozenset[str] = frozenset()) -> tuple[str, list[str]]:
    """The snippets directory of the storage (its path + /snippets), and the problems that stop a build."""
    problems = content_problem(storages, name, "snippets", "cloud-init snippets (cicustom)", also)
    store = _find(storages, name) or {}
    path = store.get("path") or ("/var/lib/vz" if name == "local" else "")
    if store and not path:
        problems.append(f"storage {name} has no path (it is not a directory storage): cloud-init snippets need a file "
                        "storage; set storage.snippets to one (e.g. local)")
    return f"{path}/snippets", problems


def boot_storage_problems(storages: list[dict[str, Any]], name: str, node: str, vm: str) -> list[str]:
    """The storage a VM's boot disk is created or cloned onto: there on the node, and with 'images' content."""
    store = _find(storages, name)
    nodes = str((store or {}).get("nodes") or "")
    if store is None or (nodes and node not in nodes.split(",")):
        there = ", ".join(sorted(str(s.get("storage")) for s in storages
                                 if "images" in str(s.get("content", "")).split(",")
                                 and (not s.get("nodes") or node in str(s.get("nodes")).split(",")))) or "none"
        return [f"{vm}: boot_disk_storage {name} does not exist on node {node} (storages there with 'images' content: "
                f"{there}): set boot_disk_storage to one of those (or storage.rootdir of the hypervisor config), or "
                "define the storage first"]
    if "images" not in str(store.get("content", "")).split(","):
        return [f"{vm}: boot_disk_storage {name} does not allow 'images' content, which a VM disk needs: add it "
                f"(pvesm set {name} --content {store.get('content')},images), or set boot_disk_storage to another storage"]
    return []
