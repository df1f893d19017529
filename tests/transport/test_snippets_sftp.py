"""Cloud-init snippets over the real OpenSSH server (SFTP + one command): temporary names renamed into place,
names by content, the VM's older snippets removed, others' kept, the host key checked."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from phoenix.errors import PhoenixError
from phoenix.kinds.vm.steps import snippet_names

from .conftest import SshServer


def test_snippets_are_renamed_into_place_and_old_ones_removed(sshd: SshServer, tmp_path: Path):
    where = tmp_path / "vz" / "snippets"
    where.mkdir(parents=True)
    (where / "phoenix-1002-user-aaaaaaaaaaaa.yml").write_text("another VM's")
    (where / "hand-made.yml").write_text("not Phoenix's")
    files = {"user-data": b"#cloud-config\nhostname: a\n", "network-config": b"version: 2\n",
             "meta-data": b"instance-id: one\n"}
    first = snippet_names(1001, files)
    node = sshd.node()
    try:
        node.put_snippets("local", str(where), {first[f]: data for f, data in files.items()}, "phoenix-1001-")
        assert {p.name for p in where.iterdir()} == {*first.values(), "phoenix-1002-user-aaaaaaaaaaaa.yml",
                                                      "hand-made.yml"}
        assert (where / first["user-data"]).read_bytes() == files["user-data"]
        assert stat.S_IMODE((where / first["user-data"]).stat().st_mode) == 0o600
        changed = {**files, "user-data": b"#cloud-config\nhostname: b\n"}
        second = snippet_names(1001, changed)
        assert second["network-config"] == first["network-config"] and second["user-data"] != first["user-data"]
        node.put_snippets("local", str(where), {second[f]: data for f, data in changed.items()}, "phoenix-1001-")
        names = {p.name for p in where.iterdir()}
        assert first["user-data"] not in names and set(second.values()) <= names
        assert "phoenix-1002-user-aaaaaaaaaaaa.yml" in names and "hand-made.yml" in names
        assert not [n for n in names if n.startswith(".")]  # no temporary file left
    finally:
        node.close()


def test_an_unknown_host_key_writes_nothing(sshd: SshServer, tmp_path: Path):
    where = tmp_path / "snippets"
    where.mkdir()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    node = sshd.node(known_hosts=str(empty))
    try:
        with pytest.raises(PhoenixError):
            node.put_snippets("local", str(where), {"phoenix-1-user-x.yml": b"x"}, "phoenix-1-")
    finally:
        node.close()
    assert list(where.iterdir()) == []


def test_snippets_of_vms_that_are_gone_are_removed(sshd: SshServer, tmp_path: Path):
    where = tmp_path / "snippets"
    where.mkdir()
    for name in ("phoenix-4242-user-aaaaaaaaaaaa.yml", "phoenix-1002-user-bbbbbbbbbbbb.yml", "phoenix-x-user-c.yml",
                 "notes.yml"):
        (where / name).write_text("x")
    node = sshd.node()
    try:
        node.put_snippets("local", str(where), {"phoenix-1001-user-cccccccccccc.yml": b"y"}, "phoenix-1001-",
                          keep_vmids=(1001, 1002))
    finally:
        node.close()
    assert {p.name for p in where.iterdir()} == {"phoenix-1001-user-cccccccccccc.yml",
                                                 "phoenix-1002-user-bbbbbbbbbbbb.yml", "phoenix-x-user-c.yml", "notes.yml"}
