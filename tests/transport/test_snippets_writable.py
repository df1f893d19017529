"""What a VM build's checks try before anything is destroyed (SshNode.check_writable), against the real OpenSSH server:
SFTP starts and the snippet directory takes a file; a node whose sshd has no sftp subsystem, or no such directory, is
one message; nothing is left behind."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from phoenix.errors import PhoenixError

from .conftest import SSHD, SshServer, free_port


@pytest.fixture(scope="module")
def no_sftp(sshd: SshServer) -> Iterator[SshServer]:
    """A second sshd with the session server's keys and settings but no `Subsystem sftp` line."""
    port = free_port()
    text = (sshd.tmp / "sshd_config").read_text()
    text = re.sub(r"(?m)^Subsystem sftp .*\n", "", text)
    text = re.sub(r"(?m)^Port \d+$", f"Port {port}", text)
    text = re.sub(r"(?m)^PidFile .*$", f"PidFile {sshd.tmp}/sshd-no-sftp.pid", text)
    cfg = sshd.tmp / "sshd_config_no_sftp"
    cfg.write_text(text)
    log = sshd.tmp / "sshd-no-sftp.log"
    proc = subprocess.Popen([str(SSHD), "-D", "-f", str(cfg), "-E", str(log)], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, log.read_text() if log.exists() else "sshd exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the second sshd did not listen"
                time.sleep(0.05)
        known = sshd.tmp / "known_hosts_no_sftp"
        known.write_text(f"[127.0.0.1]:{port} {sshd.host_key_line}\n")
        yield replace(sshd, port=port, known_hosts=known, log=log)
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_writable_snippet_directory_passes_and_keeps_nothing(sshd: SshServer, tmp_path: Path):
    where = tmp_path / "snippets"
    where.mkdir()
    node = sshd.node()
    try:
        node.check_writable(str(where))
    finally:
        node.close()
    assert list(where.iterdir()) == []


def test_a_missing_snippet_directory_is_named(sshd: SshServer, tmp_path: Path):
    node = sshd.node()
    try:
        with pytest.raises(PhoenixError, match=r"does not exist on the node"):
            node.check_writable(str(tmp_path / "nosuch" / "snippets"))
    finally:
        node.close()


def test_a_node_whose_sshd_has_no_sftp_is_refused_with_the_fix(no_sftp: SshServer, tmp_path: Path):
    where = tmp_path / "snippets"
    where.mkdir()
    node = no_sftp.node()
    try:
        node.check()  # the login alone works: the old check passed, then the rebuild failed after the destroy
        with pytest.raises(PhoenixError) as refused:
            node.check_writable(str(where))
        with pytest.raises(PhoenixError):  # what the rebuild would have used fails the same way
            node.put_snippets("local", str(where), {"phoenix-1001-user-aaaaaaaaaaaa.yml": b"x"}, "phoenix-1001-")
    finally:
        node.close()
    assert "cannot start SFTP" in str(refused.value) and "Subsystem sftp" in str(refused.value)
    assert list(where.iterdir()) == []
