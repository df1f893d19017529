"""Errors a person can act on."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PART = re.compile(r'\.([^.\[]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')
_PLAIN_KEY = re.compile(r"[\w-]+")


def human_path(path: str) -> str:
    """A JSON path as a person reads it: `$.lxc_configs["950"].network_config.ip` -> `lxc_configs.950.network_config.ip`
    (a key that is not a plain name keeps its quotes; `$`, the whole file, is ""). Any other text is left as it is."""
    if not path.startswith("$"):
        return path
    out, pos, rest = [], 0, path[1:]
    while pos < len(rest):
        m = _PART.match(rest, pos)
        if m is None:
            return path
        name, index, key = m.groups()
        if index is not None:
            out.append(f"[{index}]")
        elif name is not None:
            out.append(f".{name}")
        else:
            out.append(f".{key}" if _PLAIN_KEY.fullmatch(key) else f'["{key}"]')
        pos = m.end()
    return "".join(out).removeprefix(".")


class PhoenixError(Exception):
    """Base of Phoenix's own errors: the message says what happened and what to do."""


@dataclass(frozen=True)
class Problem:
    """One problem in a config file: where it is (path: a JSON path, `$` for the whole file, or a place such as
    `line 4`) and what is expected. Shown with the path as a person reads it (human_path)."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = human_path(self.path)
        return f"{self.file}: {where}: {self.message}" if where else f"{self.file}: {self.message}"


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
