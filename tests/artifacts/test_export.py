"""`doit export`: vzdump through the API, the archive copied from the node into the store, keyed by identity."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from phoenix.artifacts.store import ENV
from tests.core.conftest import NODE, Checkout


def identity(co: Checkout, vmid: int) -> str:
    return next(t[len("phx-id-"):] for t in co.tags(vmid) if t.startswith("phx-id-"))


def test_export_dumps_the_layer_and_its_ancestors_into_the_store(built: Checkout, store: Path) -> None:
    mark = built.mark()
    result = built.doit("export", "ct920")
    assert result.rc == 0, result.output
    dumps = [(p, b) for m, p, b in built.pve.requests[mark:] if m == "POST" and p.endswith("/vzdump")]
    assert [p for p, _ in dumps] == [f"{NODE}/vzdump"] * 3
    # the README: "mode `stop` for a stopped template: it is dumped exactly as snapshotted"
    forms = [dict(parse_qsl(b.decode() if isinstance(b, bytes) else str(b))) for _, b in dumps]
    assert sorted((f["vmid"], f["mode"]) for f in forms) == [("900", "stop"), ("901", "stop"), ("920", "stop")]
    manifests = {m["layer"]: m for m in (json.loads(p.read_text()) for p in store.glob("*.json"))}
    assert set(manifests) == {"ct900", "ct901", "ct920"}
    for layer, vmid in (("ct900", 900), ("ct901", 901), ("ct920", 920)):
        m = manifests[layer]
        assert m["identity"] == identity(built, vmid)
        archive = store / m["archive"]
        assert archive.name == f"{m['identity']}.tar.gz" and archive.read_bytes()[:2] == b"\x1f\x8b"
        assert hashlib.sha256(archive.read_bytes()).hexdigest() == m["sha256"] and m["size"] == archive.stat().st_size
        with tarfile.open(archive) as tar:  # the simulator's vzdump: the container's config, as vzdump keeps it
            conf = tar.extractfile("./etc/vzdump/pct.conf").read().decode()  # type: ignore[union-attr]
        assert f"phx-id-{m['identity']}" in conf
    assert manifests["ct901"]["parent_identity"] == manifests["ct900"]["identity"]
    assert manifests["ct920"]["parent_build"] == manifests["ct901"]["build"]
    assert manifests["ct900"]["parent_identity"] is None and manifests["ct900"]["kind"] == "lxc"
    assert manifests["ct900"]["proxmox_version"] and all(m["created"] for m in manifests.values())
    assert not list((built.cache / "sim" / "node-fs").rglob("vzdump-*"))  # the dumps are removed from the node
    assert "ct920  exported: " in result.output
    mark = built.mark()
    again = built.doit("export", "ct920")
    assert again.rc == 0 and again.output.count("already in the store") == 3, again.output
    assert not [p for m, p, _ in built.pve.requests[mark:] if p.endswith("/vzdump")]  # "not dumped again"


def test_export_refuses_a_layer_not_built_as_configured(built: Checkout, store: Path) -> None:
    built.edit_guest(920, memory_mb=12345)
    result = built.doit("export", "ct920")
    assert result.rc == 1 and "ct920 is not built as configured" in result.output, result.output
    assert "Traceback" not in result.output
    assert not store.exists() or not list(store.iterdir())


def test_export_without_a_store_says_how_to_set_one(built: Checkout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    result = built.doit("export", "ct900")
    assert result.rc == 1 and "PHOENIX_ARTIFACTS" in result.output, result.output


def test_an_interrupted_export_leaves_no_archive_under_its_final_name(built: Checkout, store: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from phoenix.errors import PhoenixError
    from phoenix.transport.simulated import SimulatedNode

    def cut(self: SimulatedNode, path: str, sink) -> int:  # the connection drops after part of the archive
        sink(b"the first part of an archive")
        raise PhoenixError(f"cannot read {path} on the node: connection lost")

    monkeypatch.setattr(SimulatedNode, "fetch", cut)
    result = built.doit("export", "ct900")
    assert result.rc == 1 and "connection lost" in result.output, result.output
    assert list(store.iterdir()) == []  # no archive, no manifest, no temporary file
    assert not list((built.cache / "sim" / "node-fs").rglob("vzdump-*"))  # the dump is removed from the node anyway
    monkeypatch.undo()
    monkeypatch.setenv("PHOENIX_ARTIFACTS", str(store))
    assert built.doit("export", "ct900").rc == 0 and len(list(store.glob("*.json"))) == 1
