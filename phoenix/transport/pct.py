"""Container operations on the node with `pct`, over any Shell: run a script in a guest, `pct set`, remove secrets.

Proxmox has no API to run a command inside a container, and some settings (devN, bind mounts,
feature flags other than nesting) are refused to API tokens: these are done here, as root on the node.

A script run is two commands. First `pct exec CTID -- sh -s -- DIRS... PATHS...` creates the guest
layout (see phoenix.transport.base) and writes every file: the paths are on the command line, the
contents only on the channel's stdin (base64 here-documents in the script `sh -s` reads), each
written through a 0600 temp file and renamed into place. So secret values never appear on a command
line, in a log, or on the node's disk. Then `pct exec CTID -- sh -c 'exec "$@" 2>&1' sh timeout ...
env PHOENIX_*=... /bin/bash /opt/phoenix/run/NAME` runs the script; its lines are streamed as they come.
The guest needs sh, base64, find and timeout (every Debian/Ubuntu template has them).
Every command line is built from shlex.quote'd words.
"""

from __future__ import annotations

import base64
import math
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from ..errors import PhoenixError
from .base import (
    CONTEXT_ENV,
    CONTEXT_JSON,
    FILES_DIR,
    LIB_PATH,
    RUN_DIR,
    SCRIPT_ENV,
    SECRETS_DIR,
    ExecResult,
    Output,
    ScriptRun,
)
from .shell import Completed, Shell, q

TAIL_LINES = 20
KILL_AFTER_S = 10          # the guest-side `timeout` sends KILL this long after TERM
CLIENT_GRACE_S = 15        # the channel is closed this long after run.timeout_s if the guest has not ended it
PCT_TIMEOUT_S = 300        # delivery, pct set, removing secrets
_OPTION_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_HEREDOC_END = "PHOENIX_EOF"   # 11 characters: never a line of base64, whose lines are multiples of 4 long

# removes everything in $1 (the secrets directory), keeps the directory; nothing to do when it is not there
REMOVE_SECRETS_SCRIPT = 'if [ -d "$1" ]; then find "$1" -mindepth 1 -delete; fi'


def file_name_ok(name: str) -> bool:
    """Any single path component will do (it is quoted everywhere): not empty, no '/', no NUL, not '.' or '..'."""
    return bool(name) and "/" not in name and "\0" not in name and name not in (".", "..")


def delivery(files: Sequence[tuple[str, int, bytes]]) -> tuple[list[str], bytes]:
    """The argv (after `pct exec CTID --`) and the stdin that, in one go, create the Phoenix directories in the
    guest and write `files` (guest path, mode, content), each through a 0600 temp file renamed into place.

    Paths travel on the command line, contents never: they are base64 here-documents inside the
    script that `sh -s` reads from stdin.
    """
    dirs = [str(Path(CONTEXT_JSON).parent), str(Path(LIB_PATH).parent), RUN_DIR, SECRETS_DIR]
    argv = ["sh", "-s", "--", *dirs, *(path for path, _, _ in files)]
    lines = [
        "set -eu",
        'umask 022; mkdir -p "$1" "$2" "$3"',
        'umask 077; mkdir -p "$4"; chmod 700 "$4"',
        'put() { (umask 022; mkdir -p "${1%/*}"); base64 -d > "$1.phoenix-tmp"; chmod "$2" "$1.phoenix-tmp"; '
        'mv -f "$1.phoenix-tmp" "$1"; }',
    ]
    for i, (_, mode, content) in enumerate(files, start=len(dirs) + 1):
        encoded = base64.encodebytes(content).decode().rstrip("\n")
        lines += [f'put "${{{i}}}" {mode:o} <<\'{_HEREDOC_END}\'', encoded, _HEREDOC_END]
    lines.append("exit 0")
    return argv, ("\n".join(lines) + "\n").encode()


def pct_set_argv(vmid: int, options: dict[str, str]) -> list[object]:
    """`pct set VMID --key value ...`; PhoenixError for an option name that is not one."""
    bad = [k for k in options if not _OPTION_KEY.match(k)]
    if bad:
        raise PhoenixError(f"invalid pct option name(s): {', '.join(map(repr, bad))}")
    argv: list[object] = ["pct", "set", int(vmid)]
    for k, v in options.items():
        argv += [f"--{k}", v]
    return argv


class Pct:
    """Container operations on one node over a Shell; safe to share between threads."""

    def __init__(self, shell: Shell, node: str):
        self.shell = shell
        self.node = node
        self._log_lock = threading.Lock()

    def _exec(self, vmid: int, argv: Sequence[object], *, stdin: bytes = b"", what: str) -> Completed:
        done = self.shell.execute(q(["pct", "exec", int(vmid), "--", *argv]), stdin=stdin, timeout_s=PCT_TIMEOUT_S)
        if done.exit_status != 0:
            detail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()[-2000:]
            status = "timed out" if done.timed_out else f"exit {done.exit_status}"
            raise PhoenixError(f"could not {what} in CT {vmid} on node {self.node} ({status}): {detail or 'no output'}")
        return done

    def deliver(self, run: ScriptRun) -> None:
        """Put context, secrets, lib and script into the guest (see phoenix.transport.base for the layout)."""
        from ..context import to_env, to_json  # here: importing the node interface must not load the config models

        if not file_name_ok(run.name):
            raise PhoenixError(f"script name {run.name!r} cannot be a file name in {RUN_DIR}")
        bad = [n for n in run.secrets if not file_name_ok(n)]
        if bad:
            raise PhoenixError(f"secret name(s) {', '.join(map(repr, bad))} cannot be file names in {SECRETS_DIR}")
        bad = [n for n, _ in run.files if not file_name_ok(n)]
        if bad:
            raise PhoenixError(f"data file name(s) {', '.join(map(repr, bad))} cannot be file names in {FILES_DIR}")
        try:
            script, lib = run.script.read_bytes(), run.lib.read_bytes()
            data = [(f"{FILES_DIR}/{name}", 0o644, path.read_bytes()) for name, path in run.files]
        except OSError as e:
            raise PhoenixError(f"cannot read {e.filename}: {e.strerror}") from None
        files = [(CONTEXT_JSON, 0o644, to_json(run.context).encode()), (CONTEXT_ENV, 0o644, to_env(run.context).encode())]
        files += [(f"{SECRETS_DIR}/{name}", 0o600, value.encode()) for name, value in run.secrets.items()]
        files += [*data, (LIB_PATH, 0o644, lib), (run.guest_path, 0o755, script)]
        argv, stdin = delivery(files)
        self._exec(run.ctid, argv, stdin=stdin, what=f"deliver context, secrets, lib and script {run.name!r}")

    def run_script(self, run: ScriptRun, output: Output) -> ExecResult:
        """Deliver context, secrets, lib and script into the guest, run it, stream its lines to output."""
        start = time.monotonic()
        self.deliver(run)
        return stream(self.shell, ["pct", "exec", int(run.ctid), "--"], SCRIPT_ENV, run.guest_path, run, output, start,
                      self._log_lock)

    def set(self, vmid: int, options: dict[str, str]) -> None:
        """`pct set <vmid> --key value ...` on the node, for settings only root@pam may make."""
        if not options:
            return
        done = self.shell.execute(q(pct_set_argv(vmid, options)), timeout_s=PCT_TIMEOUT_S)
        if done.exit_status != 0:
            detail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()
            raise PhoenixError(f"`pct set {vmid}` on node {self.node} failed (exit {done.exit_status}): {detail or 'no output'}")

    def remove_secrets(self, vmid: int) -> None:
        """Remove every file under the guest's secrets directory, keeping the directory (fine when it is not there).

        Run before a layer is snapshotted as a template, so clones never inherit its tokens. The container must run."""
        self._exec(vmid, ["sh", "-c", REMOVE_SECRETS_SCRIPT, "sh", SECRETS_DIR], what=f"remove the secrets in {SECRETS_DIR}")


def stream(shell: Shell, prefix: Sequence[object], env: dict[str, str], path: str, run: ScriptRun, output: Output,
           start: float, log_lock: threading.Lock) -> ExecResult:
    """Run `prefix… timeout … env … bash PATH` through the shell, each output line to output and the run's log.

    `timeout` where the script runs kills its whole process group (closing the channel alone would not); stderr
    joins stdout there, so lines keep their order (sshd reads two pipes otherwise). `start`: when the delivery
    began, which counts against the run's timeout."""
    prefix_text = f"[{run.layer} {run.name}] "
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    pending = bytearray()
    log = None
    if run.log_path is not None:
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = run.log_path.open("a", encoding="utf-8")

    def emit(raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        tail.append(line)
        output(prefix_text + line)
        if log is not None:
            with log_lock:
                log.write(prefix_text + line + "\n")
                log.flush()

    def on_output(data: bytes) -> None:
        pending.extend(data)
        while (i := pending.find(b"\n")) >= 0:
            emit(bytes(pending[:i]))
            del pending[: i + 1]

    remaining = max(1.0, run.timeout_s - (time.monotonic() - start))
    seconds = max(1, math.ceil(remaining))
    words = [f"{k}={v}" for k, v in env.items()]
    command = q([*prefix, "sh", "-c", 'exec "$@" 2>&1', "sh", "timeout", f"--kill-after={KILL_AFTER_S}", seconds, "env",
                 *words, "/bin/bash", path])
    try:
        done = shell.execute(command, timeout_s=remaining + KILL_AFTER_S + CLIENT_GRACE_S, on_output=on_output)
        if pending:
            emit(bytes(pending))
    finally:
        if log is not None:
            log.close()
    elapsed = time.monotonic() - start
    timed_out = done.timed_out or (done.exit_status in (124, 137) and elapsed >= run.timeout_s)
    return ExecResult(exit_status=done.exit_status, seconds=elapsed, tail=tuple(tail), timed_out=timed_out)
