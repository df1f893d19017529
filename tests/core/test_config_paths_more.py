"""The rest of the paths of issue 20 (exit 2, before any request, one line each): a stack's value_file that is
absolute, climbs out of the config dir or leads out of it through a link; a cloud-init template under cloudinit/ that
is a link out; a host storage directory that is not absolute and normal or has control characters; an artifact
manifest naming its archive as a path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from phoenix.artifacts.store import Manifest
from phoenix.config.rules import absolute_problem, relative_problem
from phoenix.errors import PhoenixError

from .conftest import copy_project, doit_command
from .test_config_paths import edit_stacks, refused

STACKS = "phoenix_stacks_config.json"
HYP = "phoenix_hypervisor_config.json"


def dev_variables(stacks: dict) -> list[dict]:
    return stacks["thinkheads_ai_app"]["environments"]["development"]["variables"]


@pytest.mark.parametrize("value, said", [
    ("/etc/shadow", "'/etc/shadow' is an absolute path: give it relative to the config dir"),
    ("~/secret.conf", "'~/secret.conf' is an absolute path"),
    ("../../etc/shadow", "'../../etc/shadow' climbs out of the config dir"),
    ("a/../../x.conf", "'a/../../x.conf' climbs out of the config dir"),
    ("x\x00.conf", "has a control character"),
])
def test_a_value_file_out_of_the_config_dir_is_refused(tmp_path: Path, value: str, said: str):
    root = copy_project(tmp_path / "p", stacks=True)
    edit_stacks(root, lambda s: dev_variables(s).append({"name": "DATABASE_PASS", "value_file": value}))
    found = [p for p in refused(root) if "value_file" in p]
    assert len(found) == 1 and said in found[0], found
    assert f'{root / "etc" / STACKS}: docker_stacks.thinkheads_ai_app.environments.development.variables[' \
           in found[0], found


def test_a_value_file_linking_out_is_judged_by_the_file_it_is(tmp_path: Path):
    root = copy_project(tmp_path / "p", stacks=True)
    outside = tmp_path / "elsewhere.conf"
    outside.write_text("s3cret\n")
    outside.chmod(0o600)
    (root / "etc" / "db.conf").symlink_to(outside)
    edit_stacks(root, lambda s: dev_variables(s).append({"name": "DATABASE_PASS", "value_file": "db.conf"}))
    [found] = [p for p in refused(root) if "value_file" in p]
    assert f"'db.conf' leads to {outside}, outside the config dir" in found, found


def test_a_template_linking_out_of_cloudinit_is_exit_2_before_any_request(tmp_path: Path):
    root = copy_project(tmp_path / "p", vms=True)
    secret = tmp_path / "host-secret"
    secret.write_text("#cloud-config\nhostname: stolen\n")
    own = root / "cloudinit" / "1001"
    own.mkdir()
    (own / "user-data.yml.j2").symlink_to(secret)
    result = doit_command(root)
    out = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in out, out
    assert f"{own / 'user-data.yml.j2'}: leads to {secret}, outside {root / 'cloudinit'}" in out, out
    assert not (root / ".cache" / "sim" / "state.json").exists() and not (root / ".cache" / "cloudinit").exists()


@pytest.mark.parametrize("path, said", [
    ("/mnt/../etc", "'/mnt/../etc' has '..' in it: write the directory it means (/etc)"),
    ("/mnt//data/", "'/mnt//data/' is not written as Proxmox keeps it: write /mnt/data"),
    ("/mnt/da\x01ta", "has a control character"),
    ("mnt/data", "a Proxmox storage directory"),
])
def test_a_host_storage_directory_must_be_absolute_and_normal(tmp_path: Path, path: str, said: str):
    root = copy_project(tmp_path / "p")
    file = root / "etc" / HYP
    data = json.loads(file.read_text())
    data["host"] = {"storage": {"storages": [{"id": "data", "type": "dir", "content": ["backup"], "path": path}]}}
    file.write_text(json.dumps(data))
    found = refused(root)
    assert len(found) == 1 and found[0].startswith(f"{file}: host.storage.storages[0].path: "), found
    if said != "a Proxmox storage directory":
        assert said in found[0], found
    assert not any(w in found[0] for w in ("type=", "input_value=", "Value error")), found


def test_a_storage_id_that_is_no_pve_volume_name_is_refused_with_the_rule(tmp_path: Path):
    root = copy_project(tmp_path / "p")
    file = root / "etc" / HYP
    data = json.loads(file.read_text())
    data["host"] = {"storage": {"storages": [{"id": "../x", "type": "dir", "content": ["backup"], "path": "/x"}]}}
    file.write_text(json.dumps(data))
    assert refused(root) == [f"{file}: host.storage.storages[0].id: \"../x\" is not a Proxmox storage id: a "
                             "lower-case letter, then lower-case letters, digits, '-', '_' or '.', ending in a letter "
                             "or digit (e.g. local-lvm)"]


@pytest.mark.parametrize("archive", ["..", "../0123456789abcdef.tar.zst", "0123456789abcdef.tar.zst/x",
                                     "fedcba9876543210.tar.zst", "0123456789abcdef.sh"])
def test_a_manifest_naming_its_archive_as_a_path_is_refused(archive: str):
    m = {"version": 1, "identity": "0123456789abcdef", "parent_identity": None, "layer": "ct900", "kind": "lxc",
         "archive": archive, "sha256": "0" * 64, "size": 1, "build": "b", "parent_build": None, "proxmox_version": "9",
         "created": 0, "vmid": 900}
    with pytest.raises(PhoenixError, match="names its archive"):
        Manifest.from_json(json.dumps(m), "x.json")
    m["archive"] = "0123456789abcdef.tar.zst"
    assert Manifest.from_json(json.dumps(m), "x.json").archive == "0123456789abcdef.tar.zst"


def test_the_path_rules():
    assert relative_problem("a/b/../c", "d") is None and relative_problem("./a", "d") is None
    assert absolute_problem("/var/lib/vz") is None and absolute_problem("/") is None
    assert os.sep == "/"
