"""SshShell: a Shell over one paramiko connection to a node (connect, host keys, log in, run, put files).

One SSH connection (a paramiko Transport) is opened lazily and shared by every thread; each command,
and each file upload, gets its own channel on it. Host keys are checked against known_hosts or a
pinned SHA256 fingerprint (phoenix.transport.hostkeys): an unknown or changed key is an error that
shows the server's fingerprint and how to trust it, and nothing is run. Login is by public key only:
ssh.key_file and/or the keys of ssh-agent.

Files are put over SFTP on the same connection: written inside a fresh 0700 staging directory next to
the destination, given their mode, then renamed over the destination (posix-rename@openssh.com), so
a reader sees the old file or the whole new one, never part of it, and nobody else can open the file
while it is being written. The node's sshd needs the sftp subsystem (Debian: openssh-sftp-server).
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import selectors
import socket
import threading
import time
from contextlib import suppress
from typing import TYPE_CHECKING, BinaryIO

import paramiko

from ..errors import PhoenixError
from ..secrets import check_private_file
from .hostkeys import check_host_key, fingerprint, preferred_key_types, read_known_hosts
from .shell import Completed

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config.hypervisor import SshConfig

_CHANNEL_ERRORS = (paramiko.SSHException, EOFError, OSError)
SFTP_TIMEOUT_S = 300.0     # for each SFTP request (not the whole upload)
STAGING_PREFIX = ".phoenix-put-"
STREAM_BLOCK = 1024 * 1024  # bytes read or sent at a time when a file is streamed


class SshShell:
    """Shell over SSH to one node; safe to share between threads."""

    def __init__(self, cfg: SshConfig, default_host: str, node: str):
        self.cfg = cfg
        self.host = cfg.host or default_host
        self.port = cfg.port
        self.node = node
        self._lock = threading.Lock()        # guards connecting and self._transport
        self._transport: paramiko.Transport | None = None

    # -- connection

    @property
    def where(self) -> str:
        """user@host:port (node NAME), for messages."""
        return f"{self.cfg.user}@{self.host}:{self.port} (node {self.node})"

    def _connect(self) -> paramiko.Transport:
        timeout = self.cfg.connect_timeout_s
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as e:
            raise PhoenixError(
                f"cannot reach {self.where} over SSH: {e.strerror or e}. "
                "Check ssh.host and ssh.port in the hypervisor config, and that sshd runs on the node."
            ) from None
        t = paramiko.Transport(sock)
        ok = False
        try:
            t.banner_timeout = t.handshake_timeout = t.auth_timeout = timeout
            if not self.cfg.host_key_fingerprint:
                known = read_known_hosts(self.cfg.known_hosts, self.host, self.port, strict=False)
                opts = t.get_security_options()
                opts.key_types = preferred_key_types(list(opts.key_types), known.keys())
            try:
                t.start_client(timeout=timeout)
            except _CHANNEL_ERRORS as e:
                raise PhoenixError(f"SSH handshake with {self.where} failed: {e}") from None
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
                except _CHANNEL_ERRORS as e:
                    raise PhoenixError(f"SSH authentication with {self.where} failed: {e}") from None
                if t.is_authenticated():
                    return
        finally:
            if agent is not None:
                agent.close()
        if not tried:
            raise PhoenixError(
                f"no SSH key to log in to {self.where}: set ssh.key_file, or load a key into ssh-agent "
                "(SSH_AUTH_SOCK) with ssh.use_agent on"
            )
        raise PhoenixError(
            f"SSH key authentication to {self.where} failed; tried: {'; '.join(tried)}. "
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
                f"{self.where} refused a new SSH channel ({e}): sshd's MaxSessions (default 10) limits how many "
                "commands one connection may run at once; run fewer tasks in parallel or raise MaxSessions"
            ) from None
        except _CHANNEL_ERRORS:
            pass
        t = self._get_transport(dead=t)  # the connection died (node rebooted, network): reconnect once
        try:
            return t.open_session(timeout=self.cfg.connect_timeout_s)
        except _CHANNEL_ERRORS as e:
            raise PhoenixError(f"cannot open an SSH channel to {self.where}: {e}") from None

    def check(self) -> None:
        """Connect, verify the host key and log in (or find the connection up); runs nothing on the node."""
        self._get_transport()

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    def __enter__(self) -> SshShell:
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
        waiter = selectors.DefaultSelector()  # epoll: any fd number (select() refuses fds past 1023)
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
                raise PhoenixError(f"SSH command on {self.where} failed to start: {e}") from None
            waiter.register(chan, selectors.EVENT_READ)
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
                    waiter.select(wait)
            # the exit status follows EOF closely
            remaining = 30.0 if deadline is None else max(1.0, deadline - time.monotonic())
            if not chan.status_event.wait(remaining):
                return Completed(-1, b"".join(out), b"".join(err), True, time.monotonic() - start)
            return Completed(chan.exit_status, b"".join(out), b"".join(err), False, time.monotonic() - start)
        finally:
            waiter.close()
            chan.close()

    # -- files

    def _sftp(self) -> paramiko.SFTPClient:
        chan = self._open_channel()
        try:
            chan.settimeout(SFTP_TIMEOUT_S)
            chan.invoke_subsystem("sftp")
            return paramiko.SFTPClient(chan)
        except _CHANNEL_ERRORS as e:
            chan.close()
            raise PhoenixError(
                f"cannot start SFTP on {self.where}: {e or type(e).__name__}. The node's sshd must offer the sftp "
                "subsystem (`Subsystem sftp ...` in /etc/ssh/sshd_config; Debian package openssh-sftp-server)."
            ) from None

    def check_writable(self, directory: str) -> None:
        """SFTP starts and a file can be made in directory: a 0700 staging directory is made there and removed, as
        put_file makes one (what a build that writes there needs, tried before it changes anything)."""
        probe = posixpath.join(directory, f"{STAGING_PREFIX}{os.urandom(8).hex()}")
        sftp = self._sftp()
        try:
            try:
                sftp.mkdir(probe, 0o700)
            except _CHANNEL_ERRORS as e:
                reason = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
                hint = (f" The directory {directory} does not exist on the node."
                        if isinstance(e, OSError) and e.errno == errno.ENOENT else "")
                raise PhoenixError(f"cannot write into {directory} on {self.where}: {reason}.{hint}") from None
            try:
                sftp.rmdir(probe)
            except _CHANNEL_ERRORS:
                raise PhoenixError(f"cannot remove the probe {probe} on {self.where}: remove it by hand") from None
        finally:
            sftp.close()

    def put_file(self, path: str, data: bytes, mode: int) -> None:
        """Write data to the absolute path on the node, with mode; replaces a file there atomically.

        The parent directory must exist. PhoenixError naming the node, the path and the step that failed;
        what was written so far is removed."""
        self.put_stream(path, io.BytesIO(data), mode)

    def put_stream(self, path: str, source: BinaryIO, mode: int) -> None:
        """put_file for a file read from source in blocks as it is sent (an archive is never held in memory)."""
        parent, name = posixpath.split(path)
        if not path.startswith("/") or not name or name in (".", "..") or "\0" in path:
            raise PhoenixError(f"cannot put a file at {path!r} on {self.where}: not an absolute path to a file")
        staging = posixpath.join(parent, f"{STAGING_PREFIX}{os.urandom(8).hex()}")
        temp = posixpath.join(staging, name)
        sftp = self._sftp()
        step, made = f"creating the staging directory {staging}", False
        try:
            sftp.mkdir(staging, 0o700)
            made = True
            sftp.chmod(staging, 0o700)        # whatever the server's umask did: only the owner may enter
            step = f"writing {temp}"
            with sftp.open(temp, "wx") as f:
                f.set_pipelined(True)
                for block in iter(lambda: source.read(STREAM_BLOCK), b""):
                    f.write(block)
                f.chmod(mode & 0o7777)
            step = f"renaming {temp} over {path}"
            sftp.posix_rename(temp, path)
            step = f"removing the (now empty) staging directory {staging}"
            sftp.rmdir(staging)
        except _CHANNEL_ERRORS as e:
            left = ""
            if made:
                with suppress(*_CHANNEL_ERRORS):
                    sftp.remove(temp)
                try:
                    sftp.rmdir(staging)
                except _CHANNEL_ERRORS:
                    left = f" Remove the leftover {staging} on the node."
            hint = ""
            if not made and isinstance(e, OSError) and e.errno == errno.ENOENT:
                hint = f" The directory {parent} does not exist on the node."
            reason = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
            raise PhoenixError(f"cannot put {path} on {self.where}: {step} failed: {reason}.{hint}{left}") from None
        finally:
            sftp.close()

    def get_stream(self, path: str, sink: Callable[[bytes], object]) -> int:
        """Read the file at path on the node over SFTP, handing it to sink block by block; the bytes read."""
        sftp = self._sftp()
        total = 0
        try:
            with sftp.open(path, "rb") as f:
                f.prefetch()
                for block in iter(lambda: f.read(STREAM_BLOCK), b""):
                    sink(block)
                    total += len(block)
        except _CHANNEL_ERRORS as e:
            reason = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
            raise PhoenixError(f"cannot read {path} on {self.where}: {reason}") from None
        finally:
            sftp.close()
        return total
