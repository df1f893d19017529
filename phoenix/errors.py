"""Errors a person can act on."""

from __future__ import annotations

from dataclasses import dataclass


class PhoenixError(Exception):
    """Base of Phoenix's own errors: the message says what happened and what to do."""


@dataclass(frozen=True)
class Problem:
    """One problem in a config file: where it is and what is expected."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}"


class ConfigError(PhoenixError):
    """Bad configuration; nothing on the host was touched."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [f"{len(problems)} problem(s) in the configuration (nothing on the host was touched):"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class SettingsError(PhoenixError):
    """A setting the run cannot work with (a token file readable by others, a certificate that fails verification, an
    API that refuses connections): refused before any request, it is bad settings (exit 2), like a bad config."""


class ProxmoxTaskFailed(PhoenixError):
    """A Proxmox task ended with an error; carries the task's own log."""

    def __init__(self, upid: str, exitstatus: str, log: list[str]):
        self.upid, self.exitstatus, self.log = upid, exitstatus, log
        tail = "\n".join(f"    | {line}" for line in log[-30:])
        super().__init__(f"Proxmox task {upid} failed: {exitstatus}\n  task log:\n{tail}")


class TaskTimeout(PhoenixError):
    """A Proxmox task did not finish in time."""


class UnsafeOperation(PhoenixError):
    """Phoenix refused to do something that could lose data (a protected or foreign guest)."""


class ScriptFailed(PhoenixError):
    """A feature or app script exited non-zero inside a guest."""
