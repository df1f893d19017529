"""Layer archives over a node configured as a real one: vzdump through fakepve over HTTPS, the archive copied over the
real sshd's SFTP (issue 15)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from phoenix.artifacts.store import ENV
from tests.transport.conftest import SshServer

from .conftest import RemoteCheckout

NODE = "/api2/json/nodes/pve1"


def node_storage(co: RemoteCheckout, where: Path) -> Path:
    """The node's backup storage in a directory of this machine (the sshd's node is this machine)."""
    co.sim.pve.node_root = Path("/")
    co.sim.pve.storages["local"]["path"] = str(where)
    co.hypervisor["artifacts"] = {"node_dump_dir": str(where / "dump")}
    co.save()
    return where / "dump"


def test_export_copies_the_archive_over_sftp(remote_built: RemoteCheckout, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    co = remote_built
    dump = node_storage(co, tmp_path / "vz")
    store = tmp_path / "store"
    monkeypatch.setenv(ENV, str(store))
    mark = co.mark()
    result = co.doit("export", "ct902")
    assert result.rc == 0, result.output
    writes = co.writes(mark)
    assert [w for w in writes if w[1].endswith("/vzdump")] == [("POST", f"{NODE}/vzdump")] * 2
    # audit: backups never go through the upload API (PVE refuses content=backup there); nothing else was written
    assert not [w for w in writes if "/upload" in w[1] or "/lxc" in w[1]], writes
    bodies = [b for m, p, b in co.pve.requests[mark:] if p.endswith("/vzdump")]
    assert all("vmid" in str(b) for b in bodies)
    manifests = {m["layer"]: m for m in (json.loads(p.read_text()) for p in store.glob("*.json"))}
    assert set(manifests) == {"ct900", "ct902"}
    for m in manifests.values():
        assert hashlib.sha256((store / m["archive"]).read_bytes()).hexdigest() == m["sha256"]
    assert list(dump.iterdir()) == []  # removed from the node over SSH once in the store
    assert not [p for p in store.iterdir() if ".partial-" in p.name]


def test_a_fresh_node_restores_over_sftp_and_bakes_the_rest(remote_built: RemoteCheckout, sshd: SshServer,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    monkeypatch.setenv(ENV, str(store))
    node_storage(remote_built, tmp_path / "vz")
    assert remote_built.doit("export", "ct902").rc == 0
    remote_built.stop()
    fresh = RemoteCheckout(tmp_path / "fresh", sshd)
    try:
        dump = node_storage(fresh, tmp_path / "vz2")
        mark = fresh.mark()
        result = fresh.doit()
        assert result.rc == 0, result.output
        assert result.outcomes() == {"ct900": "restored", "ct902": "restored", "ct910": "built"}
        requests = fresh.pve.requests[mark:]
        restores = [b for m, p, b in requests if m == "POST" and p == f"{NODE}/lxc"]
        assert len(restores) == 2
        for body in restores:  # audit what fakepve does not check: a backup volume on the backup storage, restore set
            form = dict(parse_qsl(body.decode()))
            assert re.fullmatch(r"local:backup/vzdump-lxc-90[02]-\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d\.tar\.gz",
                                form["ostemplate"]), form
            assert form["restore"] == "1" and "force" not in form and form["storage"] == "local-lvm"
        assert not [p for m, p, _ in requests if "/upload" in p or "/vzdump" in p]
        assert ("POST", f"{NODE}/lxc/902/clone") in fresh.writes(mark)
        assert fresh.sshd.guest(910, "/etc/phoenix/ran-phoenix_hypervisor_lxc_910").exists()
        assert not fresh.sshd.guest(902, "/etc/phoenix/ran-docker").exists()  # restored: no script ran
        assert list(dump.iterdir()) == []  # copied over SFTP, restored, removed over SSH
        assert fresh.doit().outcomes() == dict.fromkeys(("ct900", "ct902", "ct910"), "up-to-date")
    finally:
        fresh.stop()
