"""SshShell against a real OpenSSH server (see conftest.py): commands, the shared connection, host keys and login,
check(), and put_file over SFTP."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest

from phoenix.errors import PhoenixError
from phoenix.transport.hostkeys import fingerprint, known_hosts_name
from phoenix.transport.node import SshNode
from phoenix.transport.shell import Shell
from phoenix.transport.ssh import STAGING_PREFIX, SshShell

from .conftest import SshServer, make_key
from .runs import Lines, make_run


def test_execute_timeout_closes_the_channel(shell):
    start = time.monotonic()
    done = shell.execute("echo before; sleep 5", timeout_s=1, on_output=lambda _b: None)
    assert done.timed_out and done.exit_status == -1
    assert time.monotonic() - start < 3
    assert shell.execute("echo after", timeout_s=10).stdout == b"after\n"   # the connection survives


def test_execute_works_when_the_process_holds_more_than_1024_files(shell):
    """A long run (or a test session) may hold many files: the wait for a command's output must not use select(),
    which refuses a file descriptor past 1023 ('filedescriptor out of range in select()')."""
    import os

    held = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        done = shell.execute("sleep 0.3; echo waited", timeout_s=30)
        assert (done.exit_status, done.stdout) == (0, b"waited\n")
        streamed: list[bytes] = []
        assert shell.execute("sleep 0.3; echo streamed", timeout_s=30, on_output=streamed.append).exit_status == 0
        assert b"".join(streamed) == b"streamed\n"
    finally:
        for fd in held:
            os.close(fd)


# ------------------------------------------------------------------ the shared connection


def test_reconnects_once_when_the_connection_died(sshd, tmp_path):
    sshd.make_ct(965)
    n = sshd.node()
    t = n.shell
    try:
        assert t.execute("echo one", timeout_s=10).stdout == b"one\n"
        t._transport.sock.shutdown(socket.SHUT_RDWR)   # the network went away under us
        res = n.pct.run_script(make_run(tmp_path, 965, "echo two\n"), Lines())
        assert res.exit_status == 0
        t.close()
        assert t.execute("echo three", timeout_s=10).stdout == b"three\n"  # lazily reopened after close()
    finally:
        t.close()


def test_refused_channel_keeps_the_connection(sshd, shell):
    """sshd's MaxSessions (10) refusing an 11th channel is not a dead connection: no reconnect, a clear error."""
    t = shell._get_transport()
    held = [t.open_session() for _ in range(10)]
    try:
        with pytest.raises(PhoenixError, match="MaxSessions"):
            shell.execute("true", timeout_s=10)
        assert shell._transport is t and t.is_active()
    finally:
        for ch in held:
            ch.close()
    deadline = time.monotonic() + 10
    while True:  # the server frees the closed sessions asynchronously
        try:
            assert shell.execute("echo ok", timeout_s=10).stdout == b"ok\n"
            break
        except PhoenixError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert shell._transport is t


# ------------------------------------------------------------------ host keys and authentication


def test_unknown_host_key_rejected_with_fingerprint(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    n = len(sshd.ssh_commands())
    t = sshd.shell(known_hosts=str(kh))
    with pytest.raises(PhoenixError) as e:
        t.execute("true", timeout_s=10)
    msg = str(e.value)
    fp = fingerprint(sshd.host_key)
    assert "unknown" in msg and fp in msg and "ssh-ed25519" in msg
    assert f"ssh-keyscan -p {sshd.port} -t ed25519 127.0.0.1 >> {kh}" in msg
    assert f'"host_key_fingerprint": "{fp}"' in msg
    assert "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub" in msg
    assert kh.read_text() == "", "the key must never be added automatically"
    assert len(sshd.ssh_commands()) == n, "nothing may run on an unverified host"
    # a missing known_hosts file is the same as an empty one
    with pytest.raises(PhoenixError, match="unknown"):
        sshd.shell(known_hosts=str(tmp_path / "missing")).execute("true", timeout_s=10)


def test_changed_host_key_rejected(sshd, tmp_path):
    other, other_line = make_key(tmp_path / "other_key")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {other_line}\n")
    with pytest.raises(PhoenixError) as e:
        sshd.shell(known_hosts=str(kh)).execute("true", timeout_s=10)
    msg = str(e.value)
    assert "CHANGED" in msg and fingerprint(sshd.host_key) in msg and fingerprint(other) in msg
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {kh}" in msg


def test_hashed_known_hosts_entry_accepted(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    hashed = paramiko.HostKeys.hash_host(known_hosts_name("127.0.0.1", sshd.port))
    kh.write_text(f"{hashed} {sshd.host_key_line}\n")
    with sshd.shell(known_hosts=str(kh)) as t:
        assert t.execute("echo ok", timeout_s=10).stdout == b"ok\n"


def test_pinned_fingerprint(sshd, tmp_path):
    fp = fingerprint(sshd.host_key)
    with sshd.shell(known_hosts=str(tmp_path / "none"), host_key_fingerprint=fp) as t:
        assert t.execute("echo pinned", timeout_s=10).stdout == b"pinned\n"
    other, _ = make_key(tmp_path / "other_key")
    with pytest.raises(PhoenixError) as e:
        sshd.shell(known_hosts=str(sshd.known_hosts), host_key_fingerprint=fingerprint(other)).execute("true", timeout_s=10)
    assert "does not match" in str(e.value) and fp in str(e.value) and fingerprint(other) in str(e.value)


@pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="ssh-keygen not installed")
def test_fingerprint_matches_ssh_keygen(sshd):
    pub = sshd.tmp / "host.pub"
    pub.write_text(sshd.host_key_line + "\n")
    printed = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    assert printed.split()[1] == fingerprint(sshd.host_key)


def test_authentication_failures(sshd, tmp_path):
    make_key(tmp_path / "stranger")
    with pytest.raises(PhoenixError, match=r"key authentication to .* failed; tried: key file .*stranger.*authorized_keys"):
        sshd.shell(key_file=str(tmp_path / "stranger")).execute("true", timeout_s=10)
    (tmp_path / "stranger").chmod(0o644)
    with pytest.raises(PhoenixError, match=re.escape(f"chmod 600 {tmp_path / 'stranger'}")):
        sshd.shell(key_file=str(tmp_path / "stranger")).execute("true", timeout_s=10)
    with pytest.raises(PhoenixError, match="no SSH key"):
        sshd.shell(key_file=None, use_agent=False).execute("true", timeout_s=10)
    with pytest.raises(PhoenixError, match="does not exist"):
        sshd.shell(key_file=str(tmp_path / "nope")).execute("true", timeout_s=10)


def test_unreachable_node(sshd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]        # bound, not listening: connection refused
        with pytest.raises(PhoenixError, match=r"cannot reach .*127.0.0.1:\d+ \(node pve-test\)"):
            sshd.shell(port=port).execute("true", timeout_s=10)


# ------------------------------------------------------------------ check(): log in, run nothing


def test_check_logs_in_and_runs_nothing(sshd: SshServer):
    n, before = len(sshd.ssh_commands()), sshd.accepted()
    shell: Shell = sshd.shell()
    try:
        shell.check()
        assert sshd.accepted() - before == 1
        assert len(sshd.ssh_commands()) == n, "check() must not run anything"
        shell.check()                                   # the connection is up: nothing new
        assert shell.execute("echo ok", timeout_s=10).stdout == b"ok\n"
        assert sshd.accepted() - before == 1, "check() connects the shared connection the commands then use"
    finally:
        shell.close()
    with SshNode(sshd.shell(), "pve-test") as node:
        node.check()
    assert len(sshd.ssh_commands()) == n + 1


def _unknown_key(sshd: SshServer, tmp: Path) -> tuple[SshShell, list[str]]:
    kh = tmp / "known_hosts"
    kh.write_text("")
    fp = fingerprint(sshd.host_key)
    return sshd.shell(known_hosts=str(kh)), [
        "is unknown", fp, "Nothing was run", f"ssh-keyscan -p {sshd.port} -t ed25519 127.0.0.1 >> {kh}",
        f'"host_key_fingerprint": "{fp}"', "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"]


def _changed_key(sshd: SshServer, tmp: Path) -> tuple[SshShell, list[str]]:
    other, other_line = make_key(tmp / "other_key")
    kh = tmp / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {other_line}\n")
    return sshd.shell(known_hosts=str(kh)), [
        "has CHANGED", fingerprint(sshd.host_key), fingerprint(other), "Nothing was run",
        f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {kh}"]


def _closed_port(sshd: SshServer, tmp: Path) -> tuple[SshShell, list[str]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # free, nobody listens: connection refused
    return sshd.shell(port=port), [f"cannot reach {sshd.user}@127.0.0.1:{port} (node pve-test) over SSH",
                                   "Check ssh.host and ssh.port"]


def _refused_key(sshd: SshServer, tmp: Path) -> tuple[SshShell, list[str]]:
    make_key(tmp / "stranger")
    return sshd.shell(key_file=str(tmp / "stranger")), [
        f"SSH key authentication to {sshd.user}@127.0.0.1:{sshd.port} (node pve-test) failed",
        f"tried: key file {tmp / 'stranger'}", f"~{sshd.user}/.ssh/authorized_keys on the node"]


@pytest.mark.parametrize("case", [_unknown_key, _changed_key, _closed_port, _refused_key],
                         ids=["unknown-host-key", "changed-host-key", "closed-port", "refused-key"])
def test_check_refuses_with_the_fix_and_runs_nothing(sshd: SshServer, tmp_path,
                                                     case: Callable[[SshServer, Path], tuple[SshShell, list[str]]]):
    shell, expected = case(sshd, tmp_path)
    n = len(sshd.ssh_commands())
    try:
        with pytest.raises(PhoenixError) as e:
            shell.check()
        for text in expected:
            assert text in str(e.value)
        with pytest.raises(PhoenixError):   # and so does every later call: nothing was cached
            shell.put_file(str(tmp_path / "never"), b"x", 0o644)
        with pytest.raises(PhoenixError):
            SshNode(shell, "pve-test").check()
    finally:
        shell.close()
    assert len(sshd.ssh_commands()) == n, "nothing may run when the check fails"
    assert not (tmp_path / "never").exists()
    assert shell._transport is None


# ------------------------------------------------------------------ put_file over SFTP


def _staging_left(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_put_file_content_and_mode(sshd: SshServer, shell: SshShell, tmp_path):
    d = tmp_path / "snippets"
    d.mkdir()
    target = d / "ci user 'x' \"y\" $(touch pwned).yaml"
    data = bytes(range(256)) * 400
    shell.put_file(str(target), data, 0o640)
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    # an existing file is replaced, mode and all
    shell.put_file(str(target), b"second\n", 0o600)
    assert target.read_bytes() == b"second\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    shell.put_file(str(d / "empty"), b"", 0o755)
    assert (d / "empty").read_bytes() == b"" and stat.S_IMODE((d / "empty").stat().st_mode) == 0o755
    assert sorted(p.name for p in d.iterdir()) == sorted([target.name, "empty"])   # no staging left behind
    assert not [p for p in tmp_path.rglob("pwned")]
    # each upload is an SFTP session: the node ran its sftp-server, and no shell command with the path or data
    assert Path(sshd.ssh_commands()[-1]).name == "sftp-server"


def test_put_file_readers_see_the_old_or_the_whole_new_file(sshd: SshServer, shell: SshShell, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    target = d / "user-data.yaml"
    old, new = b"a" * (1 << 20), b"b" * (24 << 20)
    target.write_bytes(old)
    old_inode = target.stat().st_ino
    seen: set[bytes] = set()
    bad: list[int] = []
    staging_modes: set[int] = set()
    reads = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal reads
        while not done.is_set():
            content = target.read_bytes()
            reads += 1
            if content in (old, new):
                seen.add(content[:1])
            else:
                bad.append(len(content))
            for name in _staging_left(d):
                with contextlib.suppress(FileNotFoundError):   # renamed and removed meanwhile
                    staging_modes.add(stat.S_IMODE((d / name).stat().st_mode))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        shell.put_file(str(target), new, 0o644)
    finally:
        done.set()
        watcher.join(30)
    assert target.read_bytes() == new
    assert bad == [], f"a reader saw a partial file (sizes {bad[:5]})"
    assert reads > 2 and b"a" in seen
    assert target.stat().st_ino != old_inode, "the file must be renamed into place, not rewritten in place"
    assert staging_modes == {0o700}, "the upload was written inside a private staging directory next to the target"
    assert _staging_left(d) == []


def test_put_file_failures_name_the_node_and_path_and_leave_nothing(sshd: SshServer, shell: SshShell, tmp_path):
    secret = b"hf_PUTFILE_SECRET_value"
    where = f"{sshd.user}@127.0.0.1:{sshd.port} (node pve-test)"
    # the directory does not exist
    missing = tmp_path / "no such dir" / "f.yaml"
    with pytest.raises(PhoenixError) as e:
        shell.put_file(str(missing), secret, 0o600)
    msg = str(e.value)
    assert f"cannot put {missing} on {where}" in msg and f"The directory {missing.parent} does not exist on the node" in msg
    assert secret.decode() not in msg and not missing.parent.exists()
    # the upload was written, then could not be renamed over the target (a directory): the upload is removed
    d = tmp_path / "d"
    (d / "target" / "inside").mkdir(parents=True)
    with pytest.raises(PhoenixError) as e:
        shell.put_file(str(d / "target"), secret, 0o600)
    msg = str(e.value)
    assert f"cannot put {d / 'target'} on {where}: renaming {d}/{STAGING_PREFIX}" in msg
    assert secret.decode() not in msg
    assert sorted(p.name for p in d.iterdir()) == ["target"] and [p.name for p in (d / "target").iterdir()] == ["inside"]
    # not a path to a file: refused before anything is sent
    n = len(sshd.ssh_commands())
    for bad in ("relative/f.yaml", str(tmp_path) + "/", "/tmp/a\0b"):
        with pytest.raises(PhoenixError, match="not an absolute path to a file"):
            shell.put_file(bad, b"x", 0o644)
    assert len(sshd.ssh_commands()) == n
    # the connection is fine afterwards
    shell.put_file(str(d / "ok"), b"ok", 0o644)
    assert (d / "ok").read_bytes() == b"ok"


def test_put_file_checks_the_host_key(sshd: SshServer, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    n = len(sshd.ssh_commands())
    with pytest.raises(PhoenixError, match="is unknown"):
        sshd.shell(known_hosts=str(kh)).put_file(str(tmp_path / "f"), b"data", 0o644)
    assert not (tmp_path / "f").exists() and len(sshd.ssh_commands()) == n


def test_put_file_from_threads_shares_the_connection(sshd: SshServer, tmp_path):
    before = sshd.accepted()
    errors: list[BaseException] = []
    with sshd.shell() as shell:

        def put(i: int) -> None:
            try:
                shell.put_file(str(tmp_path / f"f{i}"), f"file {i}\n".encode() * 1000, 0o600 + i)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=put, args=(i,)) for i in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    assert errors == []
    for i in range(6):
        assert (tmp_path / f"f{i}").read_bytes() == f"file {i}\n".encode() * 1000
        assert stat.S_IMODE((tmp_path / f"f{i}").stat().st_mode) == 0o600 + i
    assert sshd.accepted() - before == 1
    assert _staging_left(tmp_path) == []


def test_put_file_reconnects_once_when_the_connection_died(sshd: SshServer, tmp_path):
    with sshd.shell() as shell:
        shell.put_file(str(tmp_path / "one"), b"1", 0o644)
        assert shell._transport is not None
        shell._transport.sock.shutdown(socket.SHUT_RDWR)
        shell.put_file(str(tmp_path / "two"), b"2", 0o644)
    assert (tmp_path / "two").read_bytes() == b"2"
