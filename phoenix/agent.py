"""The QEMU guest agent through the Proxmox API, within its limits: `agent/file-write` at most 60 KiB per call
(larger files go in parts, joined in the guest), `agent/exec` with an argv list (never a string), polled with
`exec-status` until it says exited and never after, output cut at 16 MiB (`out-truncated`, reported).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import PhoenixError

if TYPE_CHECKING:
    from .pve.client import Pve

FILE_WRITE_MAX = 60 * 1024                 # characters of `content` in one file-write
CHUNK = FILE_WRITE_MAX // 4 * 3            # bytes that fit once base64-encoded (encode=0: any bytes)
INPUT_MAX = 64 * 1024


@dataclass(frozen=True)
class Exited:
    exitcode: int
    out: str
    err: str
    truncated: bool
    timed_out: bool = False


class GuestAgent:
    def __init__(self, pve: Pve, node: str, vmid: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.pve, self.node, self.vmid = pve, node, vmid
        self.path = f"nodes/{node}/qemu/{vmid}/agent"
        self.clock, self.sleep = clock, sleep

    def wait_ready(self, timeout: float, poll: float = 1.0) -> None:
        """agent/ping until it answers; PhoenixError saying what to check once timeout seconds have passed."""
        end = self.clock() + timeout
        last = ""
        while True:
            try:
                self.pve.call("POST", f"{self.path}/ping")
                return
            except PhoenixError as e:
                last = str(e)
            if self.clock() >= end:
                raise PhoenixError(f"VM {self.vmid}: the guest agent did not answer within {timeout:.0f}s ({last}). "
                                   "Check that the image installs and starts qemu-guest-agent (cloud-init's packages "
                                   "and runcmd do so) and that the VM has agent enabled=1")
            self.sleep(poll)

    def write_file(self, path: str, data: bytes) -> None:
        """One file-write when it fits in 60 KiB (base64); else parts, joined by cat in the guest."""
        if len(data) <= CHUNK:
            self._write(path, data)
            return
        parts = []
        for i in range(0, len(data), CHUNK):
            part = f"{path}.phx-part{i // CHUNK:04d}"
            self._write(part, data[i:i + CHUNK])
            parts.append(part)
        done = self.run(["/bin/sh", "-c", 'out=$1; shift; cat "$@" > "$out" && rm -f "$@"', "sh", path, *parts], 120)
        if done.exitcode != 0:
            raise PhoenixError(f"VM {self.vmid}: joining the parts of {path} failed: {done.err.strip()[-500:]}")

    def _write(self, path: str, data: bytes) -> None:
        self.pve.call("POST", f"{self.path}/file-write", file=path, content=base64.b64encode(data).decode(), encode=0)

    def start(self, argv: list[str], input_data: bytes | None = None) -> int:
        if not argv or not all(isinstance(a, str) for a in argv):
            raise PhoenixError("agent exec needs an argv list of strings")
        args: dict[str, Any] = {"command": list(argv)}
        if input_data is not None:
            if len(input_data) > INPUT_MAX:
                raise PhoenixError(f"agent exec input is {len(input_data)} bytes; the agent takes at most {INPUT_MAX}")
            args["input-data"] = input_data.decode()
        answer = self.pve.call("POST", f"{self.path}/exec", **args)
        return int(answer["pid"])

    def wait(self, pid: int, timeout: float, poll: float = 0.5) -> Exited:
        """exec-status until exited (then never again: the agent forgets an exited pid once it reported it)."""
        end = self.clock() + timeout
        while True:
            status = self.pve.get(f"{self.path}/exec-status", pid=pid)
            if status.get("exited"):
                out = _text(status.get("out-data"))
                err = _text(status.get("err-data"))
                truncated = bool(status.get("out-truncated") or status.get("err-truncated"))
                return Exited(int(status.get("exitcode") or 0), out, err, truncated)
            if self.clock() >= end:
                return Exited(-1, "", "", False, timed_out=True)
            self.sleep(poll)

    def run(self, argv: list[str], timeout: float, input_data: bytes | None = None) -> Exited:
        return self.wait(self.start(argv, input_data), timeout)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
