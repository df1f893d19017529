"""A build as data: each case in data/steps/ gives a container build's inputs and the exact calls it makes, in order.

Pure: the example estate, the inputs of the case, no server. A case file holds
`{"resource", "action": "bake"|"update", ...inputs, "expect": ["<what>: <call>", ...]}`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phoenix.config.estate import load_estate
from phoenix.facts.guests import GuestFacts, split_tags
from phoenix.kinds.lxc import steps as S
from phoenix.kinds.lxc.resources import resources
from phoenix.steps import render

from .conftest import REPO

CASES = sorted((Path(__file__).parent / "data" / "steps").glob("*.json"))


@pytest.fixture(scope="module")
def estate():
    return load_estate(REPO / "etc", REPO / "images")


def build(estate, case: dict) -> list[str]:
    res = resources(estate)[case["resource"]]
    if case["action"] == "bake":
        b = case["bake"]
        bake = S.Bake(b["identity"], b["build_id"], b.get("parent_build"), b.get("owner"),
                      tuple(S.Replaced(r["vmid"], r.get("config", {}), r.get("running", False)) for r in b.get("replaced", [])),
                      b.get("download", False), b.get("devices", {}), None, tuple(b.get("keep_tags", ())),
                      b.get("keep_protection", False))
        steps = S.bake(estate, res, "pve1", bake)
    else:
        u = case["update"]
        facts = GuestFacts(res.vmid, res.name, status=u.get("status", "running"), tags=split_tags(u["tags"]),
                           maxmem=u.get("maxmem", 0), maxcpu=u.get("maxcpu", 0), maxdisk=u.get("maxdisk", 0))
        steps = S.update(estate, res, "pve1", facts, u.get("config", {}), u.get("reasons", ""))
    return [f"{s.what}: {render(s)}" for s in steps]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_steps(estate, path: Path):
    case = json.loads(path.read_text())
    assert build(estate, case) == case["expect"]


def test_there_are_cases():
    assert len(CASES) >= 4


def test_a_restore_destroys_the_old_layer_only_once_the_archive_is_on_the_node(estate):
    """The README's 'nothing is destroyed before the new build can succeed': copying the archive to the node (which can
    fail: a full disk, a dropped connection) comes before the destroy, the destroy right before the restore."""
    from types import SimpleNamespace

    res = resources(estate)["ct900"]
    bake = S.Bake("id900", "b900", None, "run1", (S.Replaced(900, {}, True),))
    m = SimpleNamespace(created=0, archive="ct900-id900.tar.zst", sha256="0" * 64)
    whats = [s.what for s in S.restore(estate, res, "pve1", bake, Path("/store/ct900-id900.tar.zst"), m)]
    copy = whats.index("copy artifact ct900-id900.tar.zst to the node")
    stop, destroy = (whats.index(f"destroy CT 900 (was built from other inputs){x}") for x in (": stop", ""))
    assert copy < stop < destroy == whats.index("restore from artifact ct900-id900.tar.zst") - 1, whats


def test_a_vm_restore_destroys_the_old_layer_only_once_the_archive_is_on_the_node():
    """As for a container: the archive is copied to the node before the VM layer it replaces is destroyed."""
    from types import SimpleNamespace

    from phoenix.kinds.vm import steps as V
    from phoenix.kinds.vm.resources import resources as vm_resources

    vms = load_estate(REPO / "etc", REPO / "images")
    res = vm_resources(vms)["vm9000"]
    bake = V.Bake("id", "b", None, "run1", (V.Replaced(9000, {}, False),), False, "/var/lib/vz/snippets",
                  {"user-data": b"#cloud-config\n", "network-config": b"version: 2\n"}, b"instance-id: x\n")
    m = SimpleNamespace(created=0, archive="vm9000-id.vma.zst", sha256="0" * 64)
    whats = [s.what for s in V.restore(vms, res, "pve1", bake, Path("/store/vm9000-id.vma.zst"), m)]
    copy = whats.index("copy artifact vm9000-id.vma.zst to the node")
    destroy = next(i for i, w in enumerate(whats) if w.startswith("destroy VM 9000"))
    assert copy < destroy < whats.index("restore from artifact vm9000-id.vma.zst"), whats


def test_a_bake_makes_the_nodes_directories_before_it_destroys_anything(estate):
    """Bind-mounted host directories the config says to create (or to give to the container's root) are made before
    the old layer is destroyed: a mkdir or chown that fails on the node leaves it standing."""
    res = resources(estate)["ct910"]
    bake = S.Bake("id910", "b910", "b902", "run1", (S.Replaced(910, {}, True),), make_dirs=("/fastData/portainer",))
    whats = [s.what for s in S.bake(estate, res, "pve1", bake)]
    made = whats.index("create host directories /fastData/portainer")
    assert made < min(i for i, w in enumerate(whats) if w.startswith("destroy CT 910")), whats
