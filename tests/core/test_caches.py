"""Caches are never trusted with code, and a damaged one is said once and rebuilt (the host is the truth)."""

from __future__ import annotations

import json
import os
import pickle

import pytest

from .conftest import ALL_TASKS, Checkout


class Payload:
    """What a poisoned CI cache would hold: unpickling it runs a command."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_in_the_cache_is_never_loaded(built: Checkout):
    marker = built.root / "pwned"
    (built.cache / "estate.pickle").write_bytes(pickle.dumps({"key": "x", "estate": Payload(str(marker))}))
    result = built.doit()
    assert result.rc == 0 and result.outcomes() == dict.fromkeys(ALL_TASKS, "up-to-date"), result.output
    assert not marker.exists()
    assert not (built.cache / "estate.pickle").exists()  # an earlier Phoenix's cache is removed, unread
    (built.cache / "model.json").write_bytes(pickle.dumps(Payload(str(marker))))  # and the JSON cache is only JSON
    assert built.doit().rc == 0 and not marker.exists()


def test_a_damaged_forced_list_is_said_once_and_reset(built: Checkout):
    (built.cache / "forced.json").write_text("5")
    first = built.doit()
    assert first.rc == 0, first.output
    assert first.output.count("forced.json is damaged") == 1
    second = built.doit()
    assert "forced.json is damaged" not in second.output and second.outcomes() == dict.fromkeys(ALL_TASKS, "up-to-date")


def test_a_truncated_doit_database_is_set_aside_once(built: Checkout):
    db = built.cache / "doit.db"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2 + 100])
    first = built.doit()
    assert first.rc == 0, first.output
    assert "doit.db was damaged (truncated" in first.output and "Traceback" not in first.output
    assert first.outcomes() == dict.fromkeys(ALL_TASKS, "up-to-date")
    assert (built.cache / "doit.db.damaged").exists()
    second = built.doit()
    assert "doit.db was damaged" not in second.output and second.rc == 0


def test_a_logs_path_that_is_a_file_is_set_aside(checkout: Checkout):
    checkout.cache.mkdir(parents=True, exist_ok=True)
    (checkout.cache / "logs").write_text("not a directory")
    result = checkout.doit("ct900")
    assert result.rc == 0, result.output
    assert "logs was not a directory" in result.output
    assert (checkout.cache / "logs" / "ct900.log").is_file()


MODEL_INPUTS = {  # what the README lists (and what else the model is made from): a change to any reads the config again
    "hypervisor config": "etc/phoenix_hypervisor_config.json",
    "container config": "etc/phoenix_lxc_configs.json",
    "stacks config": "etc/phoenix_stacks_config.json",
    "a feature script": "images/features/docker.sh",
    "the shared library": "images/lib/phoenix-common.sh",
    "a file under stacks/": "stacks/qdrant/docker-compose.yml",
    "a cloud-init template": "cloudinit/user-data.yml.j2",
}


@pytest.mark.parametrize("changed", [None, *MODEL_INPUTS])
def test_the_model_cache_is_used_until_an_input_changes(built: Checkout, changed: str | None):
    """The README: the resources are reused from .cache/model.json while no config file, script, file under stacks/
    (or cloud-init template) has changed; a run with nothing to do reads only that, not the config."""
    cached = json.loads((built.cache / "model.json").read_text())["key"]
    if changed is not None:
        path = built.root / MODEL_INPUTS[changed]
        path.write_text(path.read_text() + "\n")
    result = built.doit("plan")
    assert result.rc == 0, result.output
    assert ("estate" in result.run.__dict__) is (changed is not None)  # the config validated again, or not read at all
    assert (json.loads((built.cache / "model.json").read_text())["key"] == cached) is (changed is None)  # cached anew
