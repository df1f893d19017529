"""A shell on a machine: the interface every node operation is written against, and command-line quoting.

A Shell runs command lines and puts files; it knows nothing of Proxmox. phoenix.transport.ssh.SshShell
implements it over SSH; node operations (phoenix.transport.pct, phoenix.transport.node) use any Shell.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Completed:
    """How one command ended."""

    exit_status: int          # -1 when the server sent none (killed by a signal, channel closed)
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    seconds: float = 0.0


def q(words: Iterable[object]) -> str:
    """One shell command line, every word quoted."""
    return " ".join(shlex.quote(str(w)) for w in words)


class Shell(Protocol):
    """A shell on one machine; safe to share between threads."""

    def execute(self, command: str, *, stdin: bytes = b"", timeout_s: float | None = None,
                on_output: Callable[[bytes], None] | None = None) -> Completed:
        """Run one command line. With on_output, stdout and stderr are merged and streamed to it as they come."""
        ...

    def put_file(self, path: str, data: bytes, mode: int) -> None:
        """Write data to the absolute path with the given mode; a reader sees the old file or the whole new one."""
        ...

    def check(self) -> None:
        """Connect and log in, running nothing; PhoenixError saying what to fix when that is not possible."""
        ...

    def close(self) -> None:
        """Release connections (the next call connects again)."""
        ...
