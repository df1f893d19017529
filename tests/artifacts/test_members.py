"""A layer archive is restored only when no member would land outside the guest's root: crafted archives (tarfile)
with `..`, absolute names, links out and device files are refused, naming the member, and the layer is baked."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from phoenix.artifacts.members import archive_problem, climbs, member_problem
from phoenix.artifacts.store import Store
from tests.core.conftest import NODE, Checkout

from .test_restore import exported, fresh  # noqa: F401 - the exported store and a fresh host
from .test_store import IDENT, put


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


REFUSED = {
    "../../etc/cron.d/evil": "has '..' in its name",
    "./etc/../../../root/.ssh/authorized_keys": "has '..' in its name",
    "/etc/shadow": "has an absolute name",
    "./etc/bad\nname": "has a control character in its name",
}
LINKS = {
    ("./etc/x", tarfile.LNKTYPE, "/etc/shadow"): "is a hard link to '/etc/shadow', outside the archive's root",
    ("./etc/x", tarfile.LNKTYPE, "../../etc/shadow"): "is a hard link to '../../etc/shadow', outside",
    ("./var/lib/out", tarfile.SYMTYPE, "../../../../etc"): "is a symbolic link to '../../../../etc', which leads out",
    ("./dev/sda", tarfile.BLKTYPE, ""): "is a device file",
    ("./dev/mem", tarfile.CHRTYPE, ""): "is a device file",
}
KEPT = [("./etc/localtime", tarfile.SYMTYPE, "/usr/share/zoneinfo/Etc/UTC"),  # the guest's own path
        ("./bin", tarfile.SYMTYPE, "usr/bin"), ("./usr/lib/x", tarfile.SYMTYPE, "../../lib/x"),
        ("./usr/bin/python3", tarfile.LNKTYPE, "./usr/bin/python3.11"), ("./run/initctl", tarfile.FIFOTYPE, ""),
        ("./etc/", tarfile.DIRTYPE, ""), ("./", tarfile.DIRTYPE, "")]


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_member_that_would_be_written_outside_is_refused(name: str) -> None:
    said = member_problem(member(name))
    assert said is not None and repr(name) in said and REFUSED[name] in said, said


@pytest.mark.parametrize("case", list(LINKS), ids=lambda c: f"{c[0]}->{c[2]}")
def test_links_out_and_devices_are_refused(case: tuple[str, bytes, str]) -> None:
    said = member_problem(member(*case))
    assert said is not None and repr(case[0]) in said and LINKS[case] in said, said


@pytest.mark.parametrize("case", KEPT, ids=lambda c: c[0])
def test_what_a_root_file_system_holds_is_kept(case: tuple[str, bytes, str]) -> None:
    assert member_problem(member(*case)) is None


def test_climbing_is_counted_from_the_links_directory() -> None:
    assert not climbs("usr/lib", "../../lib/x") and climbs("usr/lib", "../../../x") and climbs("", "..")


def crafted(tmp_path: Path, evil: tarfile.TarInfo, suffix: str = ".tar.gz") -> Path:
    """A layer archive as vzdump makes one (its config), with one hostile member."""
    raw = tmp_path / "a.tar"
    with tarfile.open(raw, "w") as tar:
        conf = b"arch: amd64\nhostname: x\n"
        info = tarfile.TarInfo("./etc/vzdump/pct.conf")
        info.size = len(conf)
        tar.addfile(info, io.BytesIO(conf))
        evil.size = 5 if evil.isreg() else 0
        tar.addfile(evil, io.BytesIO(b"owned") if evil.isreg() else None)
    out = tmp_path / f"a{suffix}"
    if suffix == ".tar.zst":
        subprocess.run(["zstd", "-q", "-o", str(out), str(raw)], check=True)
    else:
        with tarfile.open(raw) as src, tarfile.open(out, "w:gz") as dst:
            for m in src:
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    return out


@pytest.mark.parametrize("suffix", [".tar.gz", pytest.param(".tar.zst", marks=pytest.mark.skipif(
    shutil.which("zstd") is None, reason="no zstd command"))])
def test_the_store_refuses_an_archive_with_a_member_out_and_names_it(tmp_path: Path, suffix: str) -> None:
    path = crafted(tmp_path, member("../../escaped"), suffix)
    assert archive_problem(path) == f"archive {path} holds member '../../escaped' has '..' in its name: it would be " \
                                    "written outside the guest's root"
    said: list[str] = []
    store = Store(tmp_path / "store", said.append, hashed=tmp_path / "hashes.json")
    m = put(store, path.read_bytes(), suffix=suffix)
    assert store.find(IDENT) is None
    assert len(said) == 1 and "member '../../escaped' has '..'" in said[0] and "baked instead" in said[0], said
    # remembered by its sha256: a later run says the same without reading it again
    assert json.loads((tmp_path / "hashes.json").read_text())[f"members:{m.sha256}"].endswith("guest's root")
    from .test_store import archive

    good = Store(tmp_path / "good", hashed=tmp_path / "h2.json")
    put(good, archive())              # a vzdump archive of the layer its manifest names, nothing out
    assert good.find(IDENT) is not None


def test_a_crafted_archive_in_the_store_is_never_sent_and_the_layer_is_baked(exported: dict, fresh: Checkout,  # noqa: F811
                                                                            store: Path, tmp_path: Path) -> None:
    m = exported["ct900"]
    archive = store / m["archive"]
    with tarfile.open(archive) as tar:
        members = [(x, tar.extractfile(x).read() if x.isreg() else None) for x in tar]  # type: ignore[union-attr]
    evil = member("./../../../escaped-by-restore")
    evil.size = 5
    with tarfile.open(archive, "w:gz") as tar:  # the archive's own members and one more, its manifest made to match
        for info, data in [*members, (evil, b"owned")]:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    data = archive.read_bytes()
    m.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    (store / f"{m['identity']}.json").write_text(json.dumps(m))
    mark = fresh.mark()
    result = fresh.doit()
    assert result.rc == 0, result.output
    assert f"phoenix: artifact refused for ct900: archive {archive} holds member './../../../escaped-by-restore' has " \
           "'..' in its name" in result.output, result.output
    assert result.outcomes()["ct900"] == "built" and "Traceback" not in result.output
    restores = [b for meth, p, b in fresh.pve.requests[mark:] if meth == "POST" and p == f"{NODE}/lxc"
                and "restore" in str(b)]
    assert not [r for r in restores if "900" in str(r)], restores  # 900 was never restored from it
    node_fs = fresh.cache / "sim" / "node-fs"
    assert not list(node_fs.rglob(m["archive"])) and not list(node_fs.rglob("vzdump-lxc-900-*"))  # never sent
    assert not list(tmp_path.rglob("escaped-by-restore")) and not list(Path("/").glob("escaped-by-restore"))
