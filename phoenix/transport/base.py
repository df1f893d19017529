"""The node transport interface: what Phoenix needs from the Proxmox node beyond the API.

Proxmox has no API to run a command inside a container, and some settings (devN, bind mounts,
feature flags other than nesting) are refused to API tokens. A transport does exactly those
things: `pct push`/`pct exec` for scripts, `pct set` for root-only settings, and reading node facts.

Guest-side layout (the contract every feature script relies on):

    /etc/phoenix/context.json      the guest's resolved config (see phoenix.context)
    /etc/phoenix/context.env       the same, flattened to PHX_* shell variables (sourceable)
    /etc/phoenix/secrets/<name>    secret files, mode 0600 (hf_token, docker_token, portainer_password)
    /opt/phoenix/lib/phoenix-common.sh   the shared shell library
    /opt/phoenix/run/<name>        the script being run

The script runs as ``/bin/bash /opt/phoenix/run/<name>`` with the environment in SCRIPT_ENV.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..facts.node import NodeFacts

CONTEXT_JSON = "/etc/phoenix/context.json"
CONTEXT_ENV = "/etc/phoenix/context.env"
SECRETS_DIR = "/etc/phoenix/secrets"
LIB_PATH = "/opt/phoenix/lib/phoenix-common.sh"
RUN_DIR = "/opt/phoenix/run"
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

    @property
    def guest_path(self) -> str:
        return f"{RUN_DIR}/{self.name}"


@dataclass(frozen=True)
class ExecResult:
    """How a script run ended."""

    exit_status: int
    seconds: float
    tail: tuple[str, ...] = ()      # last lines of output, for the error message
    simulated: bool = False
    timed_out: bool = False


Output = Callable[[str], None]


class NodeTransport(Protocol):
    """Implemented by SimulatedTransport and SshTransport; safe to share between doit threads."""

    simulated: bool

    def run_script(self, run: ScriptRun, output: Output) -> ExecResult:
        """Deliver context, secrets, lib and script into the guest, run it, stream its lines to output."""

    def pct_set(self, ctid: int, options: dict[str, str]) -> None:
        """`pct set <ctid> --key value ...` on the node, for settings only root@pam may make."""

    def node_facts(self) -> NodeFacts:
        """Driver version and NVIDIA device nodes of the node."""

    def close(self) -> None:
        """Release connections."""
