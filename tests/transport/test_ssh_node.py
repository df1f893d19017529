"""SshNode against a real OpenSSH server (see conftest.py): node facts, missing_paths, host directories' owners."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from phoenix.errors import PhoenixError
from phoenix.transport.node import DirOwner, SshNode

from .conftest import SshServer

# ------------------------------------------------------------------ node facts


def test_node_facts_without_nvidia(sshd, node):
    facts = node.facts()
    assert facts.nvidia_driver_version is None
    # whatever this machine has (usually nothing): only NVIDIA character devices
    assert all(re.match(r"^/dev/nvidia", d) and Path(d).is_char_device() for d in facts.nvidia_devices)
    assert facts.lxc_pve_version == "6.0.5-3"        # read over SSH with the other facts (the stand-in dpkg-query)


def test_node_facts_with_driver(sshd, node):
    out = sshd.root / "nvidia-smi.out"
    out.write_text("550.54.14\n550.54.14\n")
    try:
        assert node.facts().nvidia_driver_version == "550.54.14"
        out.write_text("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n")
        (sshd.root / "nvidia-smi.rc").write_text("9")
        assert node.facts().nvidia_driver_version is None
    finally:
        out.unlink()
        (sshd.root / "nvidia-smi.rc").unlink(missing_ok=True)


# ------------------------------------------------------------------ missing_paths (checked before anything is destroyed)


def test_missing_paths(sshd: SshServer, node: SshNode, tmp_path):
    sentinel = tmp_path / "pwned"
    host = tmp_path / "host"
    present = [host / "models", host / "with space", host / f"it's \"quoted\" $(touch {sentinel}) `touch {sentinel}`",
               host / "line\nbreak", host / "-n"]
    for d in present:
        d.mkdir(parents=True)
    (host / "file.txt").write_text("a file is not a directory")
    (host / "link to models").symlink_to(host / "models")
    (host / "dangling").symlink_to(host / "gone")
    missing = [host / "nope", host / "nope" / "child", host / "file.txt", host / "dangling", host / "gone\nx",
               host / f"nope 'q' $(touch {sentinel})"]
    asked = [str(p) for p in [present[0], missing[0], *present[1:], host / "link to models", *missing[1:]]]
    n = len(sshd.ssh_commands())
    assert node.missing_paths(asked) == [str(p) for p in missing]
    assert len(sshd.ssh_commands()) == n + 1, "one command for all the paths"
    assert not sentinel.exists()
    assert node.missing_paths([str(host / "models"), str(host / "nope"), str(host / "models")]) == [str(host / "nope")]
    assert node.missing_paths([str(d) for d in present]) == []


def test_missing_paths_without_paths_runs_nothing(sshd: SshServer, node: SshNode):
    n = len(sshd.ssh_commands())
    assert node.missing_paths([]) == []
    with pytest.raises(PhoenixError, match=r"host path\(s\) 'models/x', '' must be absolute"):
        node.missing_paths(["/tank", "models/x", ""])
    assert len(sshd.ssh_commands()) == n


def test_missing_paths_is_an_error_when_the_check_cannot_run(sshd: SshServer, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    with sshd.node(known_hosts=str(kh)) as node, pytest.raises(PhoenixError, match="is unknown"):
        node.missing_paths(["/"])


# ------------------------------------------------------------------ a script on the node itself


def test_a_host_script_runs_on_the_node_with_its_context_and_lib(sshd: SshServer, tmp_path: Path):
    """run_on_node: context, lib and script put over SFTP under the node's host directory, run as the SSH user, lines
    streamed and logged, the exit status returned."""
    from phoenix.transport.base import ScriptRun

    script = tmp_path / "part.sh"
    script.write_text('set -eu\nsource "$PHOENIX_LIB"\n. "$PHOENIX_ENV"\necho "lib=$LIB_OK version=$PHX_DRIVER_VERSION"\n'
                      'python3 -c "import json,os; print(json.load(open(os.environ[\'PHOENIX_CONTEXT\']))[\'gpus\'])"\nexit 3\n')
    lib = tmp_path / "lib.sh"
    lib.write_text("LIB_OK=yes\n")
    host_dir = tmp_path / "node-host"
    node = SshNode(sshd.shell(), node="pve-test", host_dir=str(host_dir))
    lines: list[str] = []
    try:
        result = node.run_on_node(ScriptRun(0, "host:nvidia", "part.sh", script, lib, {"driver_version": "580.1",
                                                                                        "gpus": [0, 1]},
                                            {}, 30, tmp_path / "host.log"), lines.append)
    finally:
        node.close()
    assert result.exit_status == 3 and not result.timed_out
    assert lines == ["[host:nvidia part.sh] lib=yes version=580.1", "[host:nvidia part.sh] [0, 1]"]
    assert (host_dir / "run" / "part.sh").stat().st_mode & 0o777 == 0o755
    assert "[host:nvidia part.sh] lib=yes version=580.1" in (tmp_path / "host.log").read_text()


# ------------------------------------------------------------------ bind-mounted directories' owners (unprivileged guests)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to uid 100000 needs root (as on a node)")


def test_dir_owners_reads_owner_and_emptiness(sshd: SshServer, node: SshNode, tmp_path):
    host = tmp_path / "host"
    empty, full, odd = host / "portainer", host / "models", host / "it's $(x) \"odd\""
    for d in (empty, full, odd):
        d.mkdir(parents=True)
    (full / ".hidden").write_text("a dot file counts")
    (host / "file.txt").write_text("not a directory")
    (host / "link").symlink_to(full)
    asked = [str(empty), str(full), str(odd), str(host / "file.txt"), str(host / "nope"), str(host / "link")]
    found = node.dir_owners(asked)
    uid, gid = os.getuid(), os.getgid()
    assert found == {
        str(empty): DirOwner(str(empty), uid, gid, True), str(full): DirOwner(str(full), uid, gid, False),
        str(odd): DirOwner(str(odd), uid, gid, True), str(host / "link"): DirOwner(str(host / "link"), uid, gid, False)}
    assert node.dir_owners([]) == {}


@needs_root
def test_give_dirs_chowns_only_empty_directories(sshd: SshServer, node: SshNode, tmp_path):
    empty, full = tmp_path / "portainer", tmp_path / "models"
    empty.mkdir()
    full.mkdir()
    (full / "model.safetensors").write_text("weights")
    node.give_dirs([str(empty)], 100000)
    assert (empty.stat().st_uid, empty.stat().st_gid) == (100000, 100000)
    assert node.dir_owners([str(empty)])[str(empty)] == DirOwner(str(empty), 100000, 100000, True)
    with pytest.raises(PhoenixError, match="is not empty any more: left as it is"):
        node.give_dirs([str(full)], 100000)
    assert (full.stat().st_uid, (full / "model.safetensors").stat().st_uid) == (0, 0)
