"""What a real Proxmox cluster refuses that the simulator's cluster accepts, found in its request log.

fakepve keeps one set of volumes per storage for the whole cluster (FACTS.md), so `local` of pve1 and of pve2 look
like one, and a clone across members is checked against the target storage only. A real cluster:
- clones a guest to another node (`target`) only when every volume of the source is on shared storage and the
  clone's storage is shared too, and makes no linked clone across (pve-container and qemu-server `clone_vm`:
  "can't clone CT to node 'X' (CT uses local storage)", "can't clone to non-shared storage 'X'");
- has a local storage's volumes on one node only: an OS template or cloud image on `local` used by a create on
  pve2 must have been downloaded on pve2 (or be one of the images every simulated node starts with).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

NODE_PATH = re.compile(r"^/api2/json/nodes/([^/]+)/(lxc|qemu)(?:/(\d+)(/clone)?)?$")
DOWNLOAD = re.compile(r"^/api2/json/nodes/([^/]+)/storage/([^/]+)/download-url$")
VOLUME = re.compile(r"^([A-Za-z0-9_.-]+):(\S+)$")


def _params(body: Any) -> dict[str, str]:
    text = body.decode() if isinstance(body, bytes) else str(body or "")
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _disk_storage(params: dict[str, str]) -> str | None:
    for key in ("rootfs", "scsi0", "virtio0", "storage"):
        if params.get(key):
            return params[key].split(":", 1)[0].split(",", 1)[0]
    return None


def cluster_refused(requests: list[tuple[str, str, Any]], shared: set[str], everywhere: set[str]) -> list[str]:
    """Each request of the log a real cluster refuses, in one line. shared: the shared storages; everywhere: the
    volumes every member has from the start."""
    out: list[str] = []
    disk: dict[int, str] = {}                       # where each guest's disk is, as its creation said
    have: set[tuple[str, str]] = set()              # (node, volume) downloaded there
    for method, path, body in requests:
        if method != "POST":
            continue
        p = _params(body)
        if found := DOWNLOAD.match(path):
            node, storage = found.groups()
            folder = "vztmpl" if p.get("content") == "vztmpl" else p.get("content", "")
            have.add((node, f"{storage}:{folder}/{p.get('filename', '')}"))
            continue
        found = NODE_PATH.match(path)
        if not found:
            continue
        node, kind, vmid, clone = found.groups()
        if vmid is None:  # a create or a restore on `node`
            new = int(p.get("vmid", 0))
            used = [p.get("ostemplate", "")]
            used += [m.group(1) for v in p.values() if (m := re.search(r"import-from=([^,\s]+)", v))]
            for volume in filter(None, used):
                if ":backup/" in volume:  # a layer copy's archive: moved to this member over SSH (not in this log)
                    continue
                storage = volume.split(":", 1)[0]
                if storage not in shared and volume not in everywhere and (node, volume) not in have:
                    out.append(f"POST {path}: {volume} is on {node}'s own {storage}, where nothing put it "
                               "(downloaded on another member?)")
            if (where := _disk_storage(p)) is not None:
                disk[new] = where
            continue
        if clone:
            source, new, target = int(vmid), int(p.get("newid", 0)), p.get("target")
            disk[new] = p.get("storage") or disk.get(source, "")
            if target and target != node:
                if disk.get(source) not in shared:
                    out.append(f"POST {path} target={target}: the source's disk is on {disk.get(source)}, not shared "
                               f"(can't clone {'CT' if kind == 'lxc' else 'VM'} to node '{target}' (uses local storage))")
                if p.get("storage") not in shared:
                    out.append(f"POST {path} target={target}: can't clone to non-shared storage '{p.get('storage')}'")
                if kind == "qemu" and not p.get("full"):
                    out.append(f"POST {path} target={target}: a linked clone across nodes")
    return out


def audit_cluster(pve: Any, everywhere: set[str]) -> None:
    shared = {name for name, s in pve.storages.items() if s.get("shared")}
    found = cluster_refused(pve.requests, shared, everywhere)
    assert not found, "requests a real Proxmox cluster refuses:\n" + "\n".join(found)


def volumes(pve: Any) -> set[str]:
    """Every volume the simulated cluster has now (before a test's runs: what each member starts with)."""
    return {f"{name}:{v}" for name, s in pve.storages.items() for v in s.get("volumes", {})}
