"""The Proxmox node itself (pure): its NVIDIA driver and device nodes (the query to run on the node, and its parser),
and the record of the host parts Phoenix set up, kept in the node's notes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NodeFacts:
    """What Phoenix reads on the node itself."""

    nvidia_driver_version: str | None = None
    nvidia_devices: tuple[str, ...] = ()   # /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm, ...
    lxc_pve_version: str | None = None     # the installed lxc-pve package (dpkg), None when not read


_VERSION = re.compile(r"^\d+\.\d+(?:\.\d+)?$")
_PROC_VERSION = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)\s")
_DEVICE = re.compile(r"^/dev/(?:nvidia(\d+)|nvidiactl|nvidia-uvm|nvidia-uvm-tools|nvidia-modeset|nvidia-caps/[A-Za-z0-9_.-]+)$")
_DEVICE_ORDER = {"/dev/nvidiactl": 1, "/dev/nvidia-uvm": 2, "/dev/nvidia-uvm-tools": 3, "/dev/nvidia-modeset": 4}


def parse_driver_version(nvidia_smi: str, proc_version: str = "") -> str | None:
    """The driver version from `nvidia-smi --query-gpu=driver_version --format=csv,noheader` (one line per GPU),
    else from /proc/driver/nvidia/version; None when neither has one (no driver, nvidia-smi failing)."""
    for line in nvidia_smi.splitlines():
        if _VERSION.match(line.strip()):
            return line.strip()
    m = _PROC_VERSION.search(proc_version)
    return m.group(1) if m else None


def parse_nvidia_devices(listing: str) -> tuple[str, ...]:
    """The NVIDIA character devices from a list of paths (one per line), GPUs in numeric order first."""
    found = {line.strip() for line in listing.splitlines() if _DEVICE.match(line.strip())}

    def order(path: str) -> tuple[int, int, str]:
        m = _DEVICE.match(path)
        if m and m.group(1) is not None:
            return (0, int(m.group(1)), path)
        return (1, _DEVICE_ORDER.get(path, 9), path)

    return tuple(sorted(found, key=order))


NODE_FACTS_SCRIPT = """\
echo '--- nvidia-smi'
nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null
echo '--- proc'
cat /proc/driver/nvidia/version 2>/dev/null
echo '--- devices'
for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -c "$f" ] && echo "$f"; done
echo '--- lxc-pve'
dpkg-query -W -f='${Version}\n' lxc-pve 2>/dev/null
exit 0
"""


def parse_node_facts(output: str) -> NodeFacts:
    """NodeFacts from the output of NODE_FACTS_SCRIPT."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("--- ") and line[4:].strip() in ("nvidia-smi", "proc", "devices", "lxc-pve"):
            current = line[4:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    text = {k: "\n".join(v) for k, v in sections.items()}
    return NodeFacts(
        nvidia_driver_version=parse_driver_version(text.get("nvidia-smi", ""), text.get("proc", "")),
        nvidia_devices=parse_nvidia_devices(text.get("devices", "")),
        lxc_pve_version=text.get("lxc-pve", "").strip() or None,
    )


# runc 1.3.3 (November 2025, in Docker's and Ubuntu's packages) cannot start a container in an unprivileged LXC
# container unless lxc-pve has the fix (runc#4968, containerd#12484, moby#51405).
LXC_PVE_FOR_DOCKER = "6.0.5-2"


def debian_version_key(version: str) -> tuple[int, ...]:
    """The numbers of a Debian version in order (6.0.5-2 -> (6, 0, 5, 2)): enough to order lxc-pve's releases."""
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    return (int(epoch) if epoch.isdigit() else 0, *(int(n) for n in re.findall(r"\d+", rest)))


def lxc_pve_docker_problem(version: str | None) -> str | None:
    """Why Docker would not start containers in an unprivileged guest on this node (None: it will)."""
    if version is None:
        return (f"the node's lxc-pve version could not be read (dpkg-query -W lxc-pve): Docker in an unprivileged "
                f"container needs lxc-pve {LXC_PVE_FOR_DOCKER} or newer")
    if debian_version_key(version) < debian_version_key(LXC_PVE_FOR_DOCKER):
        return (f"the node has lxc-pve {version}; Docker in an unprivileged container needs lxc-pve {LXC_PVE_FOR_DOCKER} "
                "or newer (runc 1.3.3+ fails: open sysctl net.ipv4.ip_unprivileged_port_start: permission denied): "
                "apt-get update && apt-get install lxc-pve on the node")
    return None


# ---------------------------------------------------------------- the host parts' record, in the node's notes

HOST_MARK = "phoenix-host: "
HOST_RULE = "\n\n---\nSet up by Phoenix: the record below says what each host:* part was built from.\n"


@dataclass(frozen=True)
class HostFacts:
    """What the node's notes say about one host part: the identity it was set up with (None: never)."""

    identity: str | None = None
    inputs: dict[str, str] | None = None
    managed: bool = True        # the node is the estate's own: nothing on it is "not Phoenix's"
    building: bool = False
    owner: str | None = None

    @property
    def build_id(self) -> str | None:
        return self.identity


def split_notes(description: str | None) -> tuple[str, dict[str, dict[str, Any]]]:
    """(the person's own text, the host record by part key) from the node's notes."""
    text = description or ""
    at = text.find(HOST_MARK)
    if at < 0:
        return text, {}
    user = text[:at]
    user = user[: -len(HOST_RULE)] if user.endswith(HOST_RULE) else user.rstrip("\n")
    try:
        record = json.loads(text[at + len(HOST_MARK):].splitlines()[0])
    except (ValueError, IndexError):
        return user, {}
    return user, {k: v for k, v in record.items() if isinstance(v, dict)} if isinstance(record, dict) else {}


def join_notes(user_text: str, record: dict[str, dict[str, Any]]) -> str:
    """The node's notes: the person's own text kept, then Phoenix's record."""
    return f"{user_text}{HOST_RULE}{HOST_MARK}{json.dumps(record, sort_keys=True)}\n"
