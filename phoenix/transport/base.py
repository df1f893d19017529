"""What a script run in a guest is, how it ended, and the guest-side layout every feature script relies on.

Scripts reach the guest with `pct exec` only (phoenix.transport.pct): the files are written by a
`sh -s` script read from stdin, then the script runs; nothing is copied with `pct push`.

Guest-side layout (the contract every feature script relies on):

    /etc/phoenix/context.json      the guest's resolved config (see phoenix.context)
    /etc/phoenix/context.env       the same, flattened to PHX_* shell variables (sourceable)
    /etc/phoenix/secrets/<name>    secret files, mode 0600 (hf_token, docker_token, portainer_password);
                                   Pct.remove_secrets empties it (before a template snapshot)
    /opt/phoenix/lib/phoenix-common.sh   the shared shell library
    /opt/phoenix/run/<name>        the script being run
    /opt/phoenix/files/<name>      data files the script reads (the vllm feature's lock), mode 0644

The script runs as ``/bin/bash /opt/phoenix/run/<name>`` with the environment in SCRIPT_ENV.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CONTEXT_JSON = "/etc/phoenix/context.json"
CONTEXT_ENV = "/etc/phoenix/context.env"
SECRETS_DIR = "/etc/phoenix/secrets"
LIB_PATH = "/opt/phoenix/lib/phoenix-common.sh"
RUN_DIR = "/opt/phoenix/run"
FILES_DIR = "/opt/phoenix/files"
SCRIPT_ENV = {
    "PHOENIX_CONTEXT": CONTEXT_JSON,
    "PHOENIX_ENV": CONTEXT_ENV,
    "PHOENIX_SECRETS": SECRETS_DIR,
    "PHOENIX_LIB": LIB_PATH,
}


@dataclass(frozen=True)
class ScriptRun:
    """One feature or app script to run in a container."""

    ctid: int
    layer: str                      # "ct950": prefixes every output line
    name: str                       # feature name or app script file name
    script: Path                    # local path of the script
    lib: Path                       # local path of images/lib/phoenix-common.sh
    context: dict                   # resolved guest config -> CONTEXT_JSON and CONTEXT_ENV
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # name -> value, never logged
    timeout_s: float = 3600.0
    log_path: Path | None = None    # per-layer log (.cache/logs/<layer>.log), appended to
    files: tuple[tuple[str, Path], ...] = ()  # (name in FILES_DIR, local path): data files the script reads

    @property
    def guest_path(self) -> str:
        return f"{RUN_DIR}/{self.name}"


@dataclass(frozen=True)
class ExecResult:
    """How a script run ended."""

    exit_status: int
    seconds: float
    tail: tuple[str, ...] = ()      # last lines of output, for the error message
    timed_out: bool = False


Output = Callable[[str], None]
