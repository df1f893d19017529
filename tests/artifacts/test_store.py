"""The artifact store: archives named by identity, manifests, atomic writes, checksums refused (pure: files only)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from phoenix.artifacts.store import ENV, Manifest, Store, store_dir
from phoenix.errors import PhoenixError

IDENT = "0123456789abcdef"


def tar_of(data: bytes, name: str = "./etc/vzdump/pct.conf") -> bytes:
    """A gzipped tar holding data as one file (a store restores only archives whose members it has checked)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def put(store: Store, data: bytes, identity: str = IDENT, layer: str = "ct900", suffix: str = ".tar.gz") -> Manifest:
    name = f"{identity}{suffix}"
    with store.writing(name) as w:
        for i in range(0, len(data), 7):
            w.write(data[i:i + 7])
    m = Manifest(identity, None, layer, "lxc", name, w.sha.hexdigest(), w.size, "b1", None, "9.0", 1700000000, 900)
    store.commit(m)
    return m


def archive(identity: str = IDENT, build: str = "b1") -> bytes:
    """A container's vzdump archive as the simulator writes it: its config, with the layer's record tags."""
    from phoenix.sim.backups import archive_bytes

    return archive_bytes({"hostname": "base", "tags": f"phoenix;phx-id-{identity};phx-b-{build};phx-s-0"})


def test_an_archive_is_found_by_its_identity_with_its_manifest(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    data = archive()
    m = put(store, data)
    assert (tmp_path / "store" / f"{IDENT}.tar.gz").read_bytes() == data
    assert m.sha256 == hashlib.sha256(data).hexdigest() and m.size == len(data)
    found = Store(tmp_path / "store").find(IDENT)
    assert found == m
    assert Store(tmp_path / "store").find("fedcba9876543210") is None
    assert [x.layer for x in store.manifests()] == ["ct900"]


def test_a_corrupted_archive_is_refused_and_said(tmp_path: Path) -> None:
    said: list[str] = []
    store = Store(tmp_path, said.append)
    m = put(store, b"x" * 100)
    path = tmp_path / m.archive
    path.write_bytes(b"y" * 100)  # same size, other bytes
    fresh = Store(tmp_path, said.append)
    assert fresh.find(IDENT) is None
    assert len(said) == 1 and "does not match its manifest's sha256" in said[0] and "baked instead" in said[0]
    assert fresh.find(IDENT) is None and len(said) == 1  # said once per run
    path.write_bytes(b"y" * 10)
    assert Store(tmp_path, said.append).find(IDENT) is None and "has 10 bytes" in said[-1]
    path.unlink()
    assert Store(tmp_path, said.append).find(IDENT) is None and "is missing" in said[-1]


def test_an_interrupted_write_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(KeyboardInterrupt), store.writing("a.tar.gz") as w:
        w.write(b"half an archive")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    assert store.find(IDENT) is None


def test_an_archive_without_its_manifest_is_not_in_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.writing(f"{IDENT}.tar.gz") as w:
        w.write(b"data")
    assert not store.has(IDENT) and store.find(IDENT) is None


def test_a_manifest_for_another_identity_or_not_a_manifest_is_refused(tmp_path: Path) -> None:
    said: list[str] = []
    store = Store(tmp_path, said.append)
    put(store, b"data")
    (tmp_path / "fedcba9876543210.json").write_text((tmp_path / f"{IDENT}.json").read_text())
    assert store.find("fedcba9876543210") is None and "is for identity" in said[-1]
    (tmp_path / "aaaaaaaaaaaaaaaa.json").write_text("{not json")
    assert store.find("aaaaaaaaaaaaaaaa") is None and "not a Phoenix manifest" in said[-1]


def test_bad_archive_names_are_refused(tmp_path: Path) -> None:
    for name in ("../x", ".hidden", ""):
        with pytest.raises(PhoenixError), Store(tmp_path).writing(name):
            pass


def test_the_store_dir_comes_from_the_environment_or_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert store_dir(None, lambda p: tmp_path / p) is None
    assert store_dir("art", lambda p: tmp_path / p) == tmp_path / "art"
    monkeypatch.setenv(ENV, str(tmp_path / "env"))
    assert store_dir("art", lambda p: tmp_path / p) == tmp_path / "env"


def test_partial_files_that_killed_exports_left_are_swept_on_this_machine_only(tmp_path: Path) -> None:
    """An export killed with SIGKILL mid-stream leaves its partial file (never read: not a name the store looks up);
    the next export removes those of dead processes of this machine, and leaves another machine's (a shared store)
    and a live process's."""
    import os
    import subprocess
    import sys

    from phoenix.artifacts.store import HOST

    writer = ("import sys, time\nfrom pathlib import Path\nfrom phoenix.artifacts.store import Store\n"
              "with Store(Path(sys.argv[1])).writing('abc.tar.gz') as w:\n"
              "    w.write(b'half an archive'); w.f.flush(); print('writing', flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    assert child.stdout is not None and child.stdout.readline() == "writing\n"
    child.kill()
    child.wait()
    [left] = [p.name for p in tmp_path.glob(".abc.tar.gz.partial-*")]
    assert left == f".abc.tar.gz.partial-{HOST}-{child.pid}-" + left.rsplit("-", 1)[1]
    elsewhere = tmp_path / f".x.tar.gz.partial-another-host-{child.pid}-1"
    live = tmp_path / f".y.tar.gz.partial-{HOST}-{os.getpid()}-1"
    for path in (elsewhere, live):
        path.write_bytes(b"")
    said: list[str] = []
    assert Store(tmp_path, said.append).find(IDENT) is None
    assert Store(tmp_path, said.append).sweep() == [left]
    assert said == ["phoenix: removed 1 partial file(s) that killed exports left in the artifact store"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([elsewhere.name, live.name])
