"""What an archive holds is checked against its manifest: the guest config vzdump keeps inside it (a container's
etc/vzdump/pct.conf, a VM's qemu-server.conf in PVE's tar format or in a VMA header) carries the layer's record tags.
A foreign, replayed, truncated or unreadable archive whose manifest was made to match its bytes is refused, said once,
and the layer baked (pure: files only; the restores through the simulator are in test_restore.py and
test_vm_restore.py)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from phoenix.artifacts.embedded import guest_config, mismatch
from phoenix.artifacts.store import Manifest, Store
from phoenix.sim.backups import QM_CONF, archive_bytes

IDENT, OTHER = "0123456789abcdef", "fedcba9876543210"


def tags(identity: str = IDENT, build: str = "b1") -> str:
    return f"phoenix;phx-id-{identity};phx-b-{build};phx-s-5e771e5"


def put(store: Store, data: bytes, name: str, identity: str = IDENT, build: str = "b1") -> Manifest:
    """An archive and a manifest that matches its bytes (as anyone who can write the store can make one)."""
    with store.writing(name) as w:
        w.write(data)
    m = Manifest(identity, None, "vm9000", "vm", name, w.sha.hexdigest(), w.size, build, None, "9.0", 1700000000, 9000)
    store.commit(m)
    return m


def vma(config: str) -> bytes:
    """The start of a VMA archive as vzdump writes it, from pve-qemu's vma_spec.txt and not from the reader's own
    constants: a 60-byte head (magic, version, uuid, ctime, md5sum, blob_buffer_offset, blob_buffer_size,
    header_size; big-endian), reserved to 2043, config_names[256] at 2044, config_data[256] at 3068 (big-endian
    offsets into the blob buffer), reserved 4092-4095, dev_info[256] at 4096-12287, then the blob buffer at 12288,
    whose entries are a little-endian 16-bit length and the bytes (offset 0 is no blob)."""
    blobs = bytearray(b"\0")
    offsets = []
    for blob in (b"qemu-server.conf\0", config.encode()):
        offsets.append(len(blobs))
        blobs += len(blob).to_bytes(2, "little") + blob
    blob_at = 12288
    size = blob_at + len(blobs)
    head = (b"VMA\0" + (1).to_bytes(4, "big") + b"u" * 16 + (1700000000).to_bytes(8, "big") + b"\0" * 16
            + blob_at.to_bytes(4, "big") + len(blobs).to_bytes(4, "big") + size.to_bytes(4, "big"))
    assert len(head) == 60
    header = bytearray(head + b"\0" * (blob_at - 60))
    header[2044:2048] = offsets[0].to_bytes(4, "big")   # config_names[0]
    header[3068:3072] = offsets[1].to_bytes(4, "big")   # config_data[0]
    return bytes(header) + bytes(blobs) + b"\x00" * 4096  # then the extents


def test_what_a_vzdump_archive_holds_is_read_from_its_first_member_or_its_vma_header(tmp_path: Path) -> None:
    ct = tmp_path / "a.tar.gz"
    ct.write_bytes(archive_bytes({"hostname": "base", "tags": tags()}))
    assert "tags: " + tags() in guest_config(ct).splitlines()
    qm = tmp_path / "b.tar.gz"  # PVE's tar format of a VM backup, as the simulator writes it
    qm.write_bytes(archive_bytes({"name": "root", "tags": tags()}, member=QM_CONF))
    assert mismatch(qm, IDENT, "b1") is None
    for name, data in (("c.vma", vma(f"#a description\nname: root\ntags: {tags()}\n")),
                       ("d.vma.gz", gzip.compress(vma(f"tags: {tags()}\n")))):
        (tmp_path / name).write_bytes(data)
        assert mismatch(tmp_path / name, IDENT, "b1") is None, name
        assert "foreign or replayed" in str(mismatch(tmp_path / name, OTHER, "b1"))


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd is not installed")
def test_zstd_archives_are_read_through_zstd(tmp_path: Path) -> None:
    for name, data in (("a.tar", archive_bytes({"tags": tags()}, compressed=False)), ("b.vma", vma(f"tags: {tags()}\n"))):
        plain = tmp_path / name
        plain.write_bytes(data)
        subprocess.run(["zstd", "-q", str(plain)], check=True)
        assert mismatch(tmp_path / f"{name}.zst", IDENT, "b1") is None, name


def test_without_zstd_a_zstd_archive_is_refused_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.tar.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert "`zstd` is not installed (apt-get install zstd)" in str(mismatch(path, IDENT, "b1"))


@pytest.mark.parametrize("case", ["foreign", "replayed", "truncated", "no record", "not an archive", "no config"])
def test_an_archive_that_is_not_the_layer_its_manifest_names_is_refused_and_said_once(tmp_path: Path, case: str) -> None:
    said: list[str] = []
    store = Store(tmp_path, said.append)
    good = archive_bytes({"hostname": "base", "tags": tags()})
    data = {
        "foreign": archive_bytes({"hostname": "other", "tags": tags(OTHER, "b9")}),  # another layer's, relabelled
        "replayed": archive_bytes({"hostname": "base", "tags": tags(IDENT, "b0")}),  # an older build of this layer
        "truncated": good[:len(good) // 2],
        "no record": archive_bytes({"hostname": "base", "tags": "web;prod"}),
        "not an archive": b"#!/bin/sh\nrm -rf /\n" * 50,
        "no config": archive_bytes({"tags": tags()}, member="./etc/other.conf"),
    }[case]
    put(store, data, f"{IDENT}.tar.gz")
    assert store.find(IDENT) is None
    assert store.find(IDENT) is None and len(said) == 1, said  # said once per run
    expected = {"foreign": f"holds layer identity {OTHER} (build b9), but its manifest says {IDENT} (build b1): "
                           "a foreign or replayed archive",
                "replayed": f"holds layer identity {IDENT} (build b0), but its manifest says {IDENT} (build b1)",
                "truncated": "cannot be read as a tar archive", "no record": "no Phoenix layer record",
                "not an archive": "cannot be read as a tar archive", "no config": "holds no guest config"}[case]
    # an archive that cannot be read is refused by the check of its members, which reads it first
    assert said[0].startswith("phoenix: artifact refused for vm9000: archive ") and expected in said[0], said
    assert said[0].endswith("; the layer is baked instead")


def test_reading_an_archive_extracts_nothing_and_follows_no_link(tmp_path: Path) -> None:
    """A tar whose members climb out (../, an absolute name, a link to /etc/shadow) before its config: only the config
    member is read, into memory; nothing is written anywhere."""
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name in ("../../escape", "/etc/cron.d/evil"):
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        link = tarfile.TarInfo("./etc/vzdump/pct.conf")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
    path = tmp_path / "store" / "x.tar.gz"
    path.parent.mkdir()
    path.write_bytes(out.getvalue())
    before = sorted(p for p in tmp_path.rglob("*"))
    assert "holds no guest config" in str(mismatch(path, IDENT, "b1"))
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not Path("/etc/cron.d/evil").exists()


def test_nothing_phoenix_reads_from_the_cache_or_the_store_can_run_code() -> None:
    """No loader that runs code (pickle, marshal, shelve, yaml's full and unsafe loaders, called or named), no eval or
    exec, no shell (os.system, shell=True), no archive extraction, anywhere in Phoenix: what .cache/ and the store hold
    is JSON, text and archives whose config member is only read."""
    import ast

    root = Path(__file__).resolve().parents[2] / "phoenix"
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                                                        else [])
                found += [f"{where} imports {n}" for n in names if n.split(".")[0] in ("pickle", "marshal", "shelve",
                                                                                       "dill", "cloudpickle")]
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name in ("eval", "exec", "system", "popen", "extractall", "unsafe_load", "full_load"):
                    found.append(f"{where} calls {name}")
                if name == "load" and isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "yaml":
                    found.append(f"{where} calls yaml.load")
                found += [f"{where} passes shell=True" for k in node.keywords
                          if k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value is True]
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", "") == "yaml" and node.attr in (
                    "Loader", "FullLoader", "UnsafeLoader", "CLoader", "CFullLoader", "CUnsafeLoader"):
                found.append(f"{where} uses yaml.{node.attr}")  # loaders that construct Python objects
    assert not found, found
