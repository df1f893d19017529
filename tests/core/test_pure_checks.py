"""Pure checks, without a server: what a container build needs from the node's storages, and damaged caches."""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path

import pytest

from phoenix.cachefiles import sqlite_damage
from phoenix.config.estate import load_estate
from phoenix.kinds.lxc.checks import host_path_problems, script_problems, storage_problems

from .conftest import REPO

GOOD = [{"storage": "local", "content": "vztmpl,iso,snippets", "enabled": 1, "active": 1},
        {"storage": "local-lvm", "content": "rootdir,images", "enabled": 1, "active": 1}]


@pytest.fixture(scope="module")
def estate():
    return load_estate(REPO / "etc", REPO / "images")


@pytest.mark.parametrize("storages, bake, expected", [
    (GOOD, True, []),
    ([GOOD[0]], True, ["storage 'local-lvm' (for its root file system) does not exist on the node (it has: local)"]),
    ([{**GOOD[0], "content": "iso"}, GOOD[1]], True,
     ["storage 'local' (for the OS template local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst) does not take "
      "content 'vztmpl' (it takes: iso): add it with pvesm set local --content iso,vztmpl"]),
    ([GOOD[0], {**GOOD[1], "active": 0}], True, ["storage 'local-lvm' (for its root file system) is not enabled or not active"]),
    ([GOOD[0]], False, []),  # an update writes to no storage
])
def test_storages_of_a_root_layer(estate, storages, bake, expected):
    found = storage_problems(estate, 900, storages, bake=bake)
    assert len(found) == len(expected) and all(f.startswith(e) for f, e in zip(found, expected, strict=True)), found


def test_a_clone_needs_no_template_storage(estate):
    assert storage_problems(estate, 950, [GOOD[1]], bake=True) == []


def test_scripts_and_host_paths(estate, tmp_path: Path):
    assert script_problems(estate, 950) == []
    assert host_path_problems(estate, 950, []) == []
    assert host_path_problems(estate, 950, ["/fastData/models"]) == [
        "host directory /fastData/models (bind-mounted at /models) does not exist on the node: create it there "
        "(`mkdir -p /fastData/models && chown 100000:100000 /fastData/models`: the container's root owns it), or set "
        "create_host_path: true"]


def test_sqlite_damage(tmp_path: Path):
    db = tmp_path / "doit.db"
    assert sqlite_damage(db) is None  # none yet
    with sqlite3.connect(db) as conn:
        conn.execute("create table t (x)")
        conn.executemany("insert into t values (?)", [("x" * 500,)] * 200)
    assert sqlite_damage(db) is None
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    assert sqlite_damage(db).startswith("truncated")
    db.write_bytes(data[: len(data) // 2 + 7])
    assert sqlite_damage(db).startswith("truncated")
    db.write_bytes(b"not a database at all" * 10)
    assert sqlite_damage(db) == "not an sqlite3 database"
    db.write_bytes(b"")
    assert sqlite_damage(db) is None  # sqlite3 makes an empty file a new database


# the owner of a bind-mounted host directory of an unprivileged guest (910: /fastData/portainer, 950: /fastData/models)
OWNER_CASES = [
    # (what, ctid, owner found (uid, gid, empty) or None for missing, config change, problem expected, given)
    ("the container's root", 910, (100000, 100000, False), None, None, ()),
    ("a user of the container (950's vllm)", 950, (100999, 100999, False), None, None, ()),
    ("not on the node (host_path_problems says so)", 910, None, None, None, ()),
    ("empty, owned by the host's root: given", 910, (0, 0, True), None, None, ("/fastData/portainer",)),
    ("not empty, owned by the host's root: refused", 910, (0, 0, False), None,
     "host directory /fastData/portainer (bind-mounted at /var/lib/portainer in CT 910, an unprivileged container) is "
     "owned by 0:0 on the node, outside the container's id map (100000-165535), so the container cannot write it. It "
     "needs the container's root, 100000:100000 (its app gives it to its own user from there). It is not empty, so "
     "Phoenix changed nothing: on the node run `chown -R 100000:100000 /fastData/portainer`, then rerun", ()),
    ("a group outside the map counts", 950, (100000, 1000, False), None, "is owned by 100000:1000 on the node", ()),
    ("past the map's end", 950, (165536, 165536, False), None, "is owned by 165536:165536", ()),
    ("a privileged container's ids are the host's", 910, (0, 0, False), {"unprivileged": False}, None, ()),
    ("a read-only mount is only read", 910, (0, 0, False),
     {"mount_points": [{"container_path": "/var/lib/portainer", "host_path": "/fastData/portainer", "read_only": True}]},
     None, ()),
]


def test_an_update_checks_only_the_mounts_it_adds():
    from phoenix.kinds.lxc.checks import mounted_host_paths

    config = {"mp0": "/fastData/models,mp=/models", "mp1": "local-lvm:vm-950-disk-1,mp=/scratch,size=5G",
              "memory": 2048, "mpx": "/not/a/mount"}
    assert mounted_host_paths(config) == {"/fastData/models"}
    assert mounted_host_paths({}) == set()
    from phoenix.facts.guests import description

    recorded = {"settings": {"mount_points": [{"container_path": "/var/lib/portainer", "host_path": "/fastData/portainer"},
                                              {"container_path": "/scratch", "storage": "local-lvm", "size_gb": 5}]}}
    assert mounted_host_paths({"description": description("Portainer", recorded)}) == {"/fastData/portainer"}


@pytest.mark.parametrize(("what", "ctid", "found", "change", "problem", "given"), OWNER_CASES, ids=[c[0] for c in OWNER_CASES])
def test_owner_of_bind_mounted_directories(estate, what, ctid, found, change, problem, given):
    from phoenix.kinds.lxc.checks import bind_owner_problems
    from phoenix.transport.node import DirOwner

    if change:
        estate = copy.copy(estate)
        estate.guests = {**estate.guests, ctid: estate.guests[ctid].model_copy(update=change)}
        if "mount_points" in change:
            from phoenix.config.lxc import MountPoint

            estate.guests[ctid] = estate.guests[ctid].model_copy(
                update={"mount_points": [MountPoint(**m) for m in change["mount_points"]]})
    (path,) = [mp.host_path for mp in estate.guests[ctid].mount_points]
    owners = {} if found is None else {path: DirOwner(path, *found)}
    problems, give = bind_owner_problems(estate, ctid, owners)
    assert give == given, what
    if problem is None:
        assert problems == [], what
    else:
        assert len(problems) == 1 and problem in problems[0], problems


@pytest.mark.parametrize(("value", "allowed"), [("950", {950}), ("all", {900, 920, 950}), ("920, ct950", {920, 950}),
                                                 ("", set()), ("9500", set()), ("95", set())])
def test_phoenix_destroy_protected_names_guests_or_all(monkeypatch, value: str, allowed: set[int]):
    """The README's PHOENIX_DESTROY_PROTECTED=950 (or all): the guests whose protection a run may override."""
    from phoenix.flags import protected_allowed

    monkeypatch.setenv("PHOENIX_DESTROY_PROTECTED", value)
    assert {v for v in (900, 920, 950) if protected_allowed(v)} == allowed
