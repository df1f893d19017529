"""The SSH node transport: `pct exec` / `pct set` and node facts over one paramiko connection.

One SSH connection (a paramiko Transport) is opened lazily and shared by every thread; each command
gets its own channel on it. Host keys are checked against known_hosts or a pinned SHA256 fingerprint;
an unknown or changed key is an error that shows the server's fingerprint and how to trust it.

A script run is two commands. First `pct exec CTID -- sh -s -- DIRS... PATHS...` creates the guest
layout (see phoenix.transport.base) and writes every file: the paths are on the command line, the
contents only on the channel's stdin (base64 here-documents in the script `sh -s` reads), each
written through a 0600 temp file and renamed into place. So secret values never appear on a command
line, in a log, or on the node's disk. Then `pct exec CTID -- sh -c 'exec "$@" 2>&1' sh timeout ...
env PHOENIX_*=... /bin/bash /opt/phoenix/run/NAME` runs the script; its lines are streamed as they come.
The guest needs sh, base64 and timeout (coreutils: every Debian/Ubuntu template has them).
Every command line is built from shlex.quote'd words.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import math
import re
import select
import shlex
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ..config.hypervisor import SshConfig
from ..context import to_env, to_json
from ..errors import PhoenixError
from ..facts.node import NODE_FACTS_SCRIPT, NodeFacts, parse_node_facts
from ..secrets import check_private_file
from .base import CONTEXT_ENV, CONTEXT_JSON, LIB_PATH, RUN_DIR, SCRIPT_ENV, SECRETS_DIR, ExecResult, Output, ScriptRun

TAIL_LINES = 20
KILL_AFTER_S = 10          # the guest-side `timeout` sends KILL this long after TERM
CLIENT_GRACE_S = 15        # the channel is closed this long after run.timeout_s if the guest has not ended it
_OPTION_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_CHANNEL_ERRORS = (paramiko.SSHException, EOFError, OSError)


# ---------------------------------------------------------------- pure helpers


def fingerprint(key: paramiko.PKey) -> str:
    """SHA256:… as `ssh-keygen -lf` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _short_type(key_type: str) -> str:
    """ed25519 for ssh-ed25519, as ssh-keyscan -t and /etc/ssh/ssh_host_<type>_key name it."""
    if "ed25519" in key_type:
        return "ed25519"
    if key_type.startswith("ecdsa"):
        return "ecdsa"
    if "rsa" in key_type:
        return "rsa"
    return key_type


def check_host_key(key: paramiko.PKey, host: str, port: int, known_hosts: str, pinned: str | None, node: str = "") -> None:
    """Accept the server's key if it matches the pinned fingerprint, or else a known_hosts entry; else PhoenixError."""
    fp, ktype = fingerprint(key), key.get_name()
    where = f"node {node} ({host}:{port})" if node else f"{host}:{port}"
    check_on_node = f"    ssh-keygen -lf /etc/ssh/ssh_host_{_short_type(ktype)}_key.pub"
    if pinned:
        if fp == pinned.rstrip("="):
            return
        raise PhoenixError(
            f"SSH host key of {where} does not match ssh.host_key_fingerprint:\n"
            f"    pinned:    {pinned}\n    presented: {ktype} {fp}\n"
            "This is either a reinstalled node (new host key) or someone in the middle. Nothing was run.\n"
            f"Check the key on the node's console:\n{check_on_node}\n"
            f'and if it prints {fp}, set "host_key_fingerprint": "{fp}" in the hypervisor config.'
        )
    path = Path(known_hosts).expanduser()
    keys = paramiko.HostKeys()
    if path.is_file():
        try:
            keys.load(str(path))
        except (OSError, paramiko.SSHException) as e:
            raise PhoenixError(f"cannot read known_hosts file {path}: {e}") from None
    name = known_hosts_name(host, port)
    entries = keys.lookup(name) or {}
    known = entries.get(ktype)
    if known is not None and known == key:
        return
    trust = (
        f"Check the key on the node's console:\n{check_on_node}\n"
        f"and if it prints {fp}, trust it either by adding it to {path}:\n"
        f"    ssh-keyscan -p {port} -t {_short_type(ktype)} {host} >> {path}    "
        "(then `ssh-keygen -lf` that line: it must show the same fingerprint)\n"
        f'or by pinning it in the hypervisor config: "ssh": {{"host_key_fingerprint": "{fp}"}}'
    )
    if entries:
        old = ", ".join(f"{t} {fingerprint(k)}" for t, k in entries.items())
        raise PhoenixError(
            f"SSH host key of {where} has CHANGED: {path} has {old} for {name}, the server presented {ktype} {fp}.\n"
            "This is either a reinstalled node or someone in the middle. Nothing was run.\n"
            f"If the node was reinstalled, remove the old entry:\n    ssh-keygen -R {shlex.quote(name)} -f {path}\n" + trust
        )
    raise PhoenixError(
        f"SSH host key of {where} is unknown: the server presented {ktype} {fp}, and {path} has no entry for {name}.\n"
        "Phoenix never trusts an unknown host key automatically. Nothing was run.\n" + trust
    )


def preferred_key_types(available: Sequence[str], known: Iterable[str]) -> list[str]:
    """Host key algorithms with those known_hosts has for this host first (ssh-rsa also means rsa-sha2-*)."""
    wanted: set[str] = set()
    for t in known:
        wanted |= {t, "rsa-sha2-512", "rsa-sha2-256"} if t == "ssh-rsa" else {t}
    return [t for t in available if t in wanted] + [t for t in available if t not in wanted]


def _file_name_ok(name: str) -> bool:
    """Any single path component will do (it is quoted everywhere): not empty, no '/', no NUL, not '.' or '..'."""
    return bool(name) and "/" not in name and "\0" not in name and name not in (".", "..")


def q(words: Iterable[object]) -> str:
    """One shell command line, every word quoted."""
    return " ".join(shlex.quote(str(w)) for w in words)


# ---------------------------------------------------------------- the transport


@dataclass(frozen=True)
class Completed:
    exit_status: int          # -1 when the server sent none (killed by a signal, channel closed)
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    seconds: float = 0.0


_HEREDOC_END = "PHOENIX_EOF"   # 11 characters: never a line of base64, whose lines are multiples of 4 long


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
        'put() { base64 -d > "$1.phoenix-tmp"; chmod "$2" "$1.phoenix-tmp"; mv -f "$1.phoenix-tmp" "$1"; }',
    ]
    for i, (_, mode, content) in enumerate(files, start=len(dirs) + 1):
        encoded = base64.encodebytes(content).decode().rstrip("\n")
        lines += [f'put "${{{i}}}" {mode:o} <<\'{_HEREDOC_END}\'', encoded, _HEREDOC_END]
    lines.append("exit 0")
    return argv, ("\n".join(lines) + "\n").encode()


class SshTransport:
    """NodeTransport over SSH to the Proxmox node; safe to share between threads."""

    simulated = False

    def __init__(self, cfg: SshConfig, default_host: str, node: str):
        self.cfg = cfg
        self.host = cfg.host or default_host
        self.port = cfg.port
        self.node = node
        self._lock = threading.Lock()        # guards connecting and self._transport
        self._log_lock = threading.Lock()
        self._transport: paramiko.Transport | None = None

    # -- connection

    @property
    def _where(self) -> str:
        return f"{self.cfg.user}@{self.host}:{self.port} (node {self.node})"

    def _connect(self) -> paramiko.Transport:
        timeout = self.cfg.connect_timeout_s
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as e:
            raise PhoenixError(f"cannot reach {self._where} over SSH: {e.strerror or e}") from None
        t = paramiko.Transport(sock)
        ok = False
        try:
            t.banner_timeout = t.handshake_timeout = t.auth_timeout = timeout
            if not self.cfg.host_key_fingerprint:
                entries = paramiko.HostKeys()
                path = Path(self.cfg.known_hosts).expanduser()
                if path.is_file():
                    with contextlib.suppress(OSError, paramiko.SSHException):
                        entries.load(str(path))
                known = entries.lookup(known_hosts_name(self.host, self.port)) or {}
                opts = t.get_security_options()
                opts.key_types = preferred_key_types(list(opts.key_types), known.keys())
            try:
                t.start_client(timeout=timeout)
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise PhoenixError(f"SSH handshake with {self._where} failed: {e}") from None
            check_host_key(t.get_remote_server_key(), self.host, self.port, self.cfg.known_hosts,
                           self.cfg.host_key_fingerprint, self.node)
            self._authenticate(t)
            t.set_keepalive(30)
            ok = True
            return t
        finally:
            if not ok:
                t.close()

    def _authenticate(self, t: paramiko.Transport) -> None:
        tried: list[str] = []
        keys: list[tuple[str, paramiko.PKey]] = []
        if self.cfg.key_file:
            path = check_private_file(self.cfg.key_file, "SSH private key",
                                      "Set ssh.key_file to your key, or make one: ssh-keygen -t ed25519 -f FILE")
            try:
                keys.append((f"key file {path}", paramiko.PKey.from_path(path)))
            except paramiko.PasswordRequiredException:
                raise PhoenixError(
                    f"SSH private key {path} is encrypted: load it into your agent (ssh-add {path}) and keep ssh.use_agent on"
                ) from None
            except (paramiko.SSHException, OSError, ValueError) as e:
                raise PhoenixError(f"cannot load SSH private key {path}: {e}") from None
        agent = paramiko.Agent() if self.cfg.use_agent else None
        try:
            if agent is not None:
                keys += [(f"agent key {k.get_name()} {fingerprint(k)}", k) for k in agent.get_keys()]
            for label, key in keys:
                tried.append(label)
                try:
                    t.auth_publickey(self.cfg.user, key)
                except paramiko.AuthenticationException:
                    continue
                except (paramiko.SSHException, EOFError, OSError) as e:
                    raise PhoenixError(f"SSH authentication with {self._where} failed: {e}") from None
                if t.is_authenticated():
                    return
        finally:
            if agent is not None:
                agent.close()
        if not tried:
            raise PhoenixError(
                f"no SSH key to log in to {self._where}: set ssh.key_file, or load a key into ssh-agent "
                "(SSH_AUTH_SOCK) with ssh.use_agent on"
            )
        raise PhoenixError(
            f"SSH key authentication to {self._where} failed; tried: {'; '.join(tried)}. "
            f"Add the public key to ~{self.cfg.user}/.ssh/authorized_keys on the node."
        )

    def _get_transport(self, dead: paramiko.Transport | None = None) -> paramiko.Transport:
        with self._lock:
            t = self._transport
            if t is not None and t is not dead and t.is_active():
                return t
            if t is not None:
                t.close()
                self._transport = None
            self._transport = self._connect()
            return self._transport

    def _open_channel(self) -> paramiko.Channel:
        t = self._get_transport()
        try:
            return t.open_session(timeout=self.cfg.connect_timeout_s)
        except paramiko.ChannelException as e:   # the server said no; the connection (and others' channels) is fine
            raise PhoenixError(
                f"{self._where} refused a new SSH channel ({e}): sshd's MaxSessions (default 10) limits how many "
                "commands one connection may run at once; run fewer tasks in parallel or raise MaxSessions"
            ) from None
        except _CHANNEL_ERRORS:
            pass
        t = self._get_transport(dead=t)  # the connection died (node rebooted, network): reconnect once
        try:
            return t.open_session(timeout=self.cfg.connect_timeout_s)
        except _CHANNEL_ERRORS as e:
            raise PhoenixError(f"cannot open an SSH channel to {self._where}: {e}") from None

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    def __enter__(self) -> SshTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands

    def execute(self, command: str, *, stdin: bytes = b"", timeout_s: float | None = None,
                on_output: Callable[[bytes], None] | None = None) -> Completed:
        """Run one command line on the node. With on_output, stdout and stderr are merged and streamed to it."""
        start = time.monotonic()
        deadline = None if timeout_s is None else start + timeout_s
        chan = self._open_channel()
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            if on_output is not None:
                chan.set_combine_stderr(True)
            try:
                chan.exec_command(command)
                if stdin:
                    chan.settimeout(max(1.0, (deadline - time.monotonic()) if deadline else 300.0))
                    chan.sendall(stdin)
                chan.shutdown_write()
            except _CHANNEL_ERRORS as e:  # socket.timeout is an OSError
                raise PhoenixError(f"SSH command on {self._where} failed to start: {e}") from None
            while True:
                got = False
                while chan.recv_ready():
                    data = chan.recv(65536)
                    if not data:
                        break
                    got = True
                    (on_output or out.append)(data)
                while chan.recv_stderr_ready():
                    got = True
                    err.append(chan.recv_stderr(65536))
                if chan.eof_received and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if chan.closed:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    return Completed(-1, b"".join(out), b"".join(err), True, time.monotonic() - start)
                if not got:
                    wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
                    select.select([chan], [], [], wait)
            # the exit status follows EOF closely
            remaining = 30.0 if deadline is None else max(1.0, deadline - time.monotonic())
            if not chan.status_event.wait(remaining):
                return Completed(-1, b"".join(out), b"".join(err), True, time.monotonic() - start)
            return Completed(chan.exit_status, b"".join(out), b"".join(err), False, time.monotonic() - start)
        finally:
            chan.close()

    def _pct_exec(self, ctid: int, argv: Sequence[object], *, stdin: bytes = b"", what: str) -> Completed:
        done = self.execute(q(["pct", "exec", int(ctid), "--", *argv]), stdin=stdin, timeout_s=300)
        if done.exit_status != 0:
            detail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()[-2000:]
            status = "timed out" if done.timed_out else f"exit {done.exit_status}"
            raise PhoenixError(f"could not {what} in CT {ctid} on node {self.node} ({status}): {detail or 'no output'}")
        return done

    def deliver(self, run: ScriptRun) -> None:
        """Put context, secrets, lib and script into the guest (see phoenix.transport.base for the layout)."""
        if not _file_name_ok(run.name):
            raise PhoenixError(f"script name {run.name!r} cannot be a file name in {RUN_DIR}")
        bad = [n for n in run.secrets if not _file_name_ok(n)]
        if bad:
            raise PhoenixError(f"secret name(s) {', '.join(map(repr, bad))} cannot be file names in {SECRETS_DIR}")
        try:
            script, lib = run.script.read_bytes(), run.lib.read_bytes()
        except OSError as e:
            raise PhoenixError(f"cannot read {e.filename}: {e.strerror}") from None
        files = [(CONTEXT_JSON, 0o644, to_json(run.context).encode()), (CONTEXT_ENV, 0o644, to_env(run.context).encode())]
        files += [(f"{SECRETS_DIR}/{name}", 0o600, value.encode()) for name, value in run.secrets.items()]
        files += [(LIB_PATH, 0o644, lib), (run.guest_path, 0o755, script)]
        argv, stdin = delivery(files)
        self._pct_exec(run.ctid, argv, stdin=stdin, what=f"deliver context, secrets, lib and script {run.name!r}")

    def run_script(self, run: ScriptRun, output: Output) -> ExecResult:
        start = time.monotonic()
        self.deliver(run)
        prefix = f"[{run.layer} {run.name}] "
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        pending = bytearray()
        log = None
        if run.log_path is not None:
            run.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = run.log_path.open("a", encoding="utf-8")

        def emit(raw: bytes) -> None:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            tail.append(line)
            output(prefix + line)
            if log is not None:
                with self._log_lock:
                    log.write(prefix + line + "\n")
                    log.flush()

        def on_output(data: bytes) -> None:
            pending.extend(data)
            while (i := pending.find(b"\n")) >= 0:
                emit(bytes(pending[:i]))
                del pending[: i + 1]

        remaining = max(1.0, run.timeout_s - (time.monotonic() - start))   # delivery counts against the timeout
        seconds = max(1, math.ceil(remaining))
        env = [f"{k}={v}" for k, v in SCRIPT_ENV.items()]
        # `timeout` in the guest kills the script's whole process group; closing the channel alone would not.
        # stderr joins stdout in the guest, so lines keep their order (sshd reads two pipes otherwise).
        command = q(["pct", "exec", int(run.ctid), "--", "sh", "-c", 'exec "$@" 2>&1', "sh",
                     "timeout", f"--kill-after={KILL_AFTER_S}", seconds, "env", *env, "/bin/bash", run.guest_path])
        try:
            done = self.execute(command, timeout_s=remaining + KILL_AFTER_S + CLIENT_GRACE_S,
                                on_output=on_output)
            if pending:
                emit(bytes(pending))
        finally:
            if log is not None:
                log.close()
        elapsed = time.monotonic() - start
        timed_out = done.timed_out or (done.exit_status in (124, 137) and elapsed >= run.timeout_s)
        return ExecResult(exit_status=done.exit_status, seconds=elapsed, tail=tuple(tail), timed_out=timed_out)

    def pct_set(self, ctid: int, options: dict[str, str]) -> None:
        if not options:
            return
        bad = [k for k in options if not _OPTION_KEY.match(k)]
        if bad:
            raise PhoenixError(f"invalid pct option name(s): {', '.join(map(repr, bad))}")
        argv: list[object] = ["pct", "set", int(ctid)]
        for k, v in options.items():
            argv += [f"--{k}", v]
        done = self.execute(q(argv), timeout_s=300)
        if done.exit_status != 0:
            detail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()
            raise PhoenixError(f"`pct set {ctid}` on node {self.node} failed (exit {done.exit_status}): {detail or 'no output'}")

    def node_facts(self) -> NodeFacts:
        done = self.execute(q(["sh", "-c", NODE_FACTS_SCRIPT]), timeout_s=60)
        if done.exit_status != 0:
            detail = done.stderr.decode("utf-8", "replace").strip()
            raise PhoenixError(f"reading node facts on {self._where} failed (exit {done.exit_status}): {detail}")
        return parse_node_facts(done.stdout.decode("utf-8", "replace"))
