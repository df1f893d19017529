"""Pure checks, without a server: what a container build needs from the node's storages, and damaged caches."""

from __future__ import annotations

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
        "host directory /fastData/models (bind-mounted at /models) does not exist on the node: create it there (and give "
        "it to the container's mapped user), or set create_host_path: true"]


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
