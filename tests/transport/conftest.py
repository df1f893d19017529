"""A real OpenSSH server on 127.0.0.1 for the SSH shell, pct and node tests, with a stand-in `pct` on its PATH.

The session fixture installs nothing. It needs /usr/sbin/sshd and sftp-server (Debian: openssh-server and
openssh-sftp-server, listed in .ci/apt-transport.txt); without them the SSH tests are skipped locally and
FAIL when CI=true.

It generates an ed25519 host key and client key with `cryptography`, writes an sshd_config
(127.0.0.1, a free port, no PAM, no passwords, StrictModes no, PidFile and AuthorizedKeysFile in tmp,
PermitRootLogin prohibit-password because the suite may run as root, AllowUsers = the current user)
and runs `sshd -D -f sshd_config -E sshd.log`. In that config:

* `SetEnv` puts tmp/bin first on the PATH of every session and sets SHLVL=1, so the account's shell does not
  read this machine's ~/.bashrc (bash reads it for a command over SSH only at level 1: a pyenv `rehash` there
  raced between concurrent logins and its `rm:` message became a script's output line); there, `pct` runs
  tests/transport/fakepct/pct.py (see its docstring for exactly what it fakes) and `nvidia-smi` is
  tests/transport/fakepct/nvidia-smi, and `dpkg-query` answers lxc-pve's version (fakepct/dpkg-query);
* `ForceCommand` runs fakepct/record-command, which appends each command line the client sent to
  node/ssh-commands.log, then runs it with the user's shell, as sshd itself would have;
* `Subsystem sftp` is the system's sftp-server; under ForceCommand a subsystem request runs
  record-command too, so each SFTP session shows in ssh-commands.log as the sftp-server path.

What is under test is the production SshShell, Pct and SshNode, unchanged: they send plain `pct ...` lines.

As root, sshd needs its privilege separation directory /run/sshd; the fixture creates it (empty,
0755) when it is missing, as the Debian package's tmpfiles.d entry would.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from phoenix.config.hypervisor import SshConfig
from phoenix.transport.node import SshNode
from phoenix.transport.ssh import SshShell

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVERS = (Path("/usr/lib/openssh/sftp-server"), Path("/usr/libexec/openssh/sftp-server"), Path("/usr/lib/ssh/sftp-server"))
FAKEPCT = Path(__file__).parent / "fakepct"


def make_key(path: Path) -> tuple[paramiko.PKey, str]:
    """An ed25519 key pair: the private key at path (0600), its public key and its OpenSSH public line."""
    key = Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    line = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return paramiko.Ed25519Key.from_private_key_file(str(path)), line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SshServer:
    host: str
    port: int
    user: str
    tmp: Path
    client_key: Path
    host_key: paramiko.PKey
    host_key_line: str      # "ssh-ed25519 AAAA..."
    known_hosts: Path       # has the right host key
    root: Path              # FAKEPCT_ROOT: containers under root/ct/<ctid>, commands.jsonl
    log: Path               # sshd's own log (LogLevel DEBUG3)

    def config(self, **changes: object) -> SshConfig:
        base = {"host": self.host, "port": self.port, "user": self.user, "key_file": str(self.client_key),
                "use_agent": False, "known_hosts": str(self.known_hosts), "connect_timeout_s": 10}
        return SshConfig(**{**base, **changes})

    def shell(self, **changes: object) -> SshShell:
        return SshShell(self.config(**changes), default_host="unused.invalid", node="pve-test")

    def node(self, **changes: object) -> SshNode:
        return SshNode(self.shell(**changes), node="pve-test")

    def make_ct(self, ctid: int) -> Path:
        d = self.root / "ct" / str(ctid)
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def guest(self, ctid: int, path: str) -> Path:
        return self.root / "ct" / str(ctid) / path.lstrip("/")

    def ssh_commands(self) -> list[str]:
        """Every command line the server was sent, in order."""
        f = self.root / "ssh-commands.log"
        return f.read_text().split("\0")[:-1] if f.exists() else []

    def accepted(self) -> int:
        """How many logins sshd accepted so far."""
        return self.log.read_text().count("Accepted publickey")

    def commands(self) -> list[list[str]]:
        """The argv of every `pct` invocation, in order."""
        f = self.root / "commands.jsonl"
        return [json.loads(x)["argv"] for x in f.read_text().splitlines()] if f.exists() else []


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _require_sshd() -> Path:
    """The sftp-server program; skips (or fails on CI) when it or sshd is missing."""
    sftp = next((p for p in SFTP_SERVERS if _executable(p)), None)
    if _executable(SSHD) and sftp is not None:
        return sftp
    missing = SSHD if not _executable(SSHD) else "sftp-server"
    why = f"{missing} is missing: install openssh-server and openssh-sftp-server (listed in .ci/apt-transport.txt)"
    if os.environ.get("CI") == "true":
        pytest.fail(why + " — CI must install it; the SSH transport tests may not be skipped there", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    sftp_server = _require_sshd()
    tmp = tmp_path_factory.mktemp("sshd")
    os.chmod(tmp, 0o755)
    user = getpass.getuser()
    host_key_path, client_key_path = tmp / "ssh_host_ed25519_key", tmp / "client_ed25519"
    host_key, host_line = make_key(host_key_path)
    _, client_line = make_key(client_key_path)
    (tmp / "authorized_keys").write_text(client_line + "\n")
    root = tmp / "node"
    (root / "ct").mkdir(parents=True)
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "pct").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKEPCT / "pct.py"))} "$@"\n')
    (bin_dir / "pct").chmod(0o755)
    (bin_dir / "nvidia-smi").symlink_to(FAKEPCT / "nvidia-smi")
    (bin_dir / "dpkg-query").symlink_to(FAKEPCT / "dpkg-query")     # answers for lxc-pve, as on a Proxmox node
    port = free_port()
    path = f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    cfg = tmp / "sshd_config"
    cfg.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key_path}
PidFile {tmp}/sshd.pid
AuthorizedKeysFile {tmp}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers {user}
PermitUserEnvironment no
X11Forwarding no
AllowTcpForwarding no
LogLevel DEBUG3
SetEnv PATH={path} FAKEPCT_ROOT={root} SHLVL=1
ForceCommand {shlex.quote(str(FAKEPCT / "record-command"))}
Subsystem sftp {sftp_server}
""")
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        Path("/run/sshd").mkdir(mode=0o755, parents=True)
    log = tmp / "sshd.log"
    check = subprocess.run([str(SSHD), "-t", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, f"sshd -t rejected the test config:\n{check.stderr}"
    proc = subprocess.Popen([str(SSHD), "-D", "-f", str(cfg), "-E", str(log)], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited with {proc.returncode}:\n{log.read_text() if log.exists() else ''}", pytrace=False)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"sshd did not listen on {port}:\n{log.read_text() if log.exists() else ''}", pytrace=False)
                time.sleep(0.05)
        known_hosts = tmp / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_line}\n")
        server = SshServer("127.0.0.1", port, user, tmp, client_key_path, host_key, host_line, known_hosts, root, log)
        # fail early, with sshd's log, if the login itself does not work here (e.g. a locked account)
        t = server.shell()
        try:
            t.execute("true", timeout_s=20)
        except Exception as e:
            pytest.fail(f"cannot log in to the test sshd as {user}: {e}\n--- sshd log:\n{log.read_text()[-4000:]}", pytrace=False)
        finally:
            t.close()
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def shell(sshd: SshServer) -> Iterator[SshShell]:
    t = sshd.shell()
    yield t
    t.close()


@pytest.fixture
def node(sshd: SshServer) -> Iterator[SshNode]:
    n = sshd.node()
    yield n
    n.close()
