"""What a real Proxmox node refuses that fakepve 0.5.0 accepts, found in fakepve's request log (FACTS.md):
root-only VM options from a token, `import-from` not in the `<storage>:0,import-from=<storage>:import/<file>`
form, `cicustom` with unknown keys or naming no snippet volume, `agent/exec` with a string command, and an
exec pid polled again after it was reported exited (qemu-ga forgets it). A VM restore (`archive=`, which the simulator
restores itself, backups.py) is audited too: the archive a backup volume of a VM (`<storage>:backup/vzdump-qemu-...`),
no drive option beside it (qemu-server: "option conflicts with option 'archive'"), force/unique only with an archive."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

QEMU = re.compile(r"^/api2/json/nodes/[^/]+/qemu(?:/(\d+))?(/config)?$")
EXEC = re.compile(r"^/api2/json/nodes/[^/]+/qemu/(\d+)/agent/exec$")
ROOT_ONLY = re.compile(r"^(args|hookscript|affinity|arch|hostpci\d+)$")
DISK = re.compile(r"^(scsi|sata|ide|virtio|efidisk|tpmstate)\d+$")
IMPORT_FROM = re.compile(r"^[A-Za-z0-9_.-]+:0,import-from=[A-Za-z0-9_.-]+:import/[^/\s,]+(,.*)?$")
CICUSTOM_KEYS = {"user", "network", "meta", "vendor"}
SNIPPET = re.compile(r"^[A-Za-z0-9_.-]+:snippets/[^/\s,]+$")
VM_BACKUP = re.compile(r"^[A-Za-z0-9_.-]+:backup/vzdump-qemu-\d+-\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d\."
                       r"(tar|vma)(\.(gz|lzo|zst|bz2))?$")
CREATE = re.compile(r"^/api2/json/nodes/[^/]+/qemu$")


def _params(body: Any) -> dict[str, list[str]]:
    if isinstance(body, bytes | str):
        text = body.decode() if isinstance(body, bytes) else body
        return parse_qs(text, keep_blank_values=True)
    if isinstance(body, dict):
        return {k: v if isinstance(v, list) else [str(v)] for k, v in body.items()}
    return {}


def refused(requests: list[tuple[str, str, Any]], vms: list[Any] = ()) -> list[str]:  # type: ignore[assignment]
    """Each request a real node would refuse, said in one line; vms: fakepve's VMs (their agent requests)."""
    out = []
    for method, path, body in requests:
        if method in ("POST", "PUT") and QEMU.match(path):
            params = _params(body)
            for key, values in params.items():
                if ROOT_ONLY.match(key):
                    out.append(f"{method} {path}: {key} may be set by root@pam only, not by a token")
                if DISK.match(key) and any("import-from=" in v for v in values):
                    for v in values:
                        if not IMPORT_FROM.match(v):
                            out.append(f"{method} {path}: {key}={v}: import-from needs "
                                       "<storage>:0,import-from=<storage>:import/<file>")
                if key == "cicustom":
                    for part in values[0].split(","):
                        k, _, vol = part.partition("=")
                        if k not in CICUSTOM_KEYS:
                            out.append(f"{method} {path}: cicustom key {k!r} is not user, network, meta or vendor")
                        elif not SNIPPET.match(vol):
                            out.append(f"{method} {path}: cicustom {k}={vol} is not a snippet volume")
        if method == "POST" and CREATE.match(path):
            params = _params(body)
            archive = params.get("archive", [""])[0]
            if archive and not VM_BACKUP.match(archive):
                out.append(f"{method} {path}: archive={archive} is not a VM's backup volume <storage>:backup/vzdump-qemu-...")
            if archive:
                out += [f"{method} {path}: {k} conflicts with archive (qemu-server refuses drive options on a restore)"
                        for k in params if DISK.match(k)]
            else:
                out += [f"{method} {path}: {k} requires archive" for k in params if k in ("force", "unique", "live-restore")]
        if method == "POST" and EXEC.match(path):
            command = _params(body).get("command", [])
            if len(command) == 1 and " " in command[0]:
                out.append(f"{method} {path}: command {command[0]!r} is a string; qemu-ga runs an argv list")
    for vm in vms:
        polls = Counter(asked.get("pid") for cmd, asked in getattr(vm, "agent_requests", ()) if cmd == "exec-status")
        out += [f"VM {vm.vmid}: exec pid {pid} polled {n} times after it exited (qemu-ga forgets it once reported)"
                for pid, n in polls.items() if n > 1]
    return out
