"""Layer archives over a node configured as a real one: vzdump through fakepve over HTTPS, the archive copied over the
real sshd's SFTP (issue 15)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from phoenix.artifacts.store import ENV

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
