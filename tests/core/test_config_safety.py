"""Safety checks at validation: finite numbers in range, descriptions that fit Proxmox, scripts only from
images/, bind mounts of data directories only. Each names the file, the JSON path and the fix; nothing is
touched on the host."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from phoenix.config import limits
from phoenix.config.estate import load_estate
from phoenix.config.lxc import MountPoint

from .test_config import copy_example, edit, edit_hypervisor, problems

HYP = "phoenix_hypervisor_config.json"
LXC = "phoenix_lxc_configs.json"
INF, NAN = float("inf"), float("nan")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return copy_example(tmp_path)


def test_limits_are_exported_for_the_record():
    assert (limits.PVE_DESCRIPTION_MAX, limits.RECORD_BUDGET, limits.DESCRIPTION_MAX_BYTES) == (8192, 2048, 6144)


@pytest.mark.parametrize("file, change, expected", [
    (LXC, lambda c: c["950"].update(feature_timeout_s=INF),
     'lxc_configs.950.feature_timeout_s: a number of seconds greater than 0 and at most 604800 (7 days) is '
     "expected (got Infinity)"),
    (LXC, lambda c: c["950"].update(feature_timeout_s=8 * 86400), "at most 604800 (7 days) is expected (got 691200)"),
    (LXC, lambda c: c["950"]["app"]["vllm"].update(gpu_memory_utilization=NAN),
     'lxc_configs.950.app.vllm.gpu_memory_utilization: Input should be a finite number (got NaN)'),
    (HYP, lambda d: d["behavior"].update(feature_timeout_s=-INF),
     "behavior.feature_timeout_s: a number of seconds greater than 0 and at most 604800 (7 days) is expected"),
    (HYP, lambda d: d["proxmox"].update(timeout_s=601),
     "proxmox.timeout_s: a number of seconds greater than 0 and at most 600 (10 minutes) is expected (got 601)"),
    (HYP, lambda d: d["proxmox"].update(task_timeout_s=INF),
     "proxmox.task_timeout_s: a number of seconds greater than 0 and at most 86400 (1 day) is expected"),
    (HYP, lambda d: d["ssh"].update(connect_timeout_s=NAN), "ssh.connect_timeout_s: a number of seconds"),
    (HYP, lambda d: d["ssh"].update(port=INF), "ssh.port: Input should be a finite number"),
])
def test_numbers_are_finite_and_in_range(cfg: Path, file, change, expected):
    (edit if file == LXC else edit_hypervisor)(cfg, change)
    found = problems(cfg)
    assert any(p.startswith(f"{cfg / 'etc' / file}: ") and expected in p for p in found), found


def test_description_fits_proxmox_with_the_record(cfg: Path):
    edit(cfg, lambda c: (c["900"].update(description="é" * 3072), c["950"].update(description="é" * 3073)))
    found = problems(cfg)
    assert len(found) == 1 and found[0].startswith(  # 900's 6144 bytes are fine
        f'{cfg / "etc" / LXC}: lxc_configs.950.description: description is 6146 UTF-8 bytes: Proxmox takes at '
        "most 8192 characters in a guest's description and Phoenix keeps 2048 of them for its layer record, so a "
        "guest description may have at most 6144 UTF-8 bytes; shorten it"), found
    assert len(found[0]) < 500  # the description itself is not echoed whole


@pytest.mark.parametrize("change, path", [
    (lambda c: c["950"].update(features=["../../../work/evil"]), 'lxc_configs.950.features[0]'),
    (lambda c: c["902"].update(features=["docker", "/etc/passwd"]), 'lxc_configs.902.features[1]'),
    (lambda c: c["902"].update(features=[".."]), 'lxc_configs.902.features[0]'),
    (lambda c: c["902"].update(features=["sub/docker"]), 'lxc_configs.902.features[0]'),
    (lambda c: c["902"].update(features=["docker\n"]), 'lxc_configs.902.features[0]'),
    (lambda c: c["950"].update(application_script="../../../../../etc/passwd"), 'lxc_configs.950.application_script'),
    (lambda c: c["950"].update(application_script="/etc/passwd"), 'lxc_configs.950.application_script'),
])
def test_script_names_are_names_not_paths(cfg: Path, change, path):
    edit(cfg, change)
    found = problems(cfg)
    assert any(f"{path}: " in p and "name is letters, digits, '_', '.' and '-'" in p and "(no '/', no '..', not a path)"
               in p for p in found), found


def test_script_files_resolve_inside_images(cfg: Path, tmp_path: Path):
    outside = tmp_path / "evil.sh"
    outside.write_text("#!/bin/bash\n# @phoenix summary: not Phoenix's\n")
    (cfg / "images" / "features" / "evil.sh").symlink_to(outside)
    (cfg / "images" / "apps" / "evil_app.sh").symlink_to("/etc/passwd")
    (cfg / "images" / "features" / "docker2.sh").symlink_to("docker.sh")  # a link inside images/ is fine
    edit(cfg, lambda c: (c["902"].update(features=["docker", "docker2", "evil"]),
                         c["950"].update(application_script="evil_app.sh")))
    found = problems(cfg)
    assert len(found) == 2, found
    assert any('lxc_configs.902.features[2]: ' in p and f"leads to {outside}, outside" in p and
               "a script must be a file inside the images directory" in p for p in found), found
    assert any('lxc_configs.950.application_script: ' in p and "leads to /etc/passwd, outside" in p for p in found)


@pytest.mark.parametrize("mount, expected", [
    ({"container_path": "/data", "host_path": "/"},
     "host_path / is a system directory of the node: a bind mount would give the guest the host's own files; "
     "bind-mount a data directory instead, e.g. /fastData/<name>"),
    ({"container_path": "/data", "host_path": "/fastData/../etc/pve"},
     "host_path /etc/pve lies under /etc, which is a system directory of the node"),
    ({"container_path": "/data", "host_path": "//var/"}, "host_path /var is a system directory"),
    ({"container_path": "/data", "host_path": "/var/lib/vz/images"}, "lies under /var/lib/vz"),
    ({"container_path": "/data", "host_path": "/var/lib/pve-cluster"}, "host_path /var/lib/pve-cluster is a system"),
    ({"container_path": "/data", "host_path": "/usr/./local"}, "host_path /usr/local lies under /usr"),
    ({"container_path": "/data", "host_path": "/root"}, "host_path /root is a system directory"),
    ({"container_path": "/", "host_path": "/fastData/x"}, "container_path / would hide the guest's root file system"),
    ({"container_path": "/data/..", "host_path": "/fastData/x"}, "container_path / would hide"),
    ({"container_path": "/data", "storage": "local-lvm", "size_gb": 4, "create_host_path": True},
     "create_host_path is for bind mounts: give host_path"),
])
def test_bind_mounts_of_system_directories_are_refused(cfg: Path, mount, expected):
    edit(cfg, lambda c: c["910"].update(mount_points=[mount]))
    found = problems(cfg)
    assert any(p.startswith(f'{cfg / "etc" / LXC}: lxc_configs.910.mount_points[0]') and expected in p
               for p in found), found


def test_bind_mount_paths_are_stored_normalised(cfg: Path):
    edit(cfg, lambda c: c["910"].update(mount_points=[
        {"container_path": "/var/lib/portainer/", "host_path": "/fastData//portainer/./", "persistent": True},
        {"container_path": "/srv", "host_path": "/var/data", "create_host_path": True}]))
    mounts = load_estate(cfg / "etc", cfg / "images").guests[910].mount_points
    assert [(m.container_path, m.host_path, m.create_host_path) for m in mounts] == [
        ("/var/lib/portainer", "/fastData/portainer", False), ("/srv", "/var/data", True)]


def test_create_host_path_is_not_a_guest_setting():
    """It is what the run does before the mount: it leaves the settings hash (model_dump) alone."""
    plain = MountPoint.model_validate({"container_path": "/d", "host_path": "/fastData/d"})
    created = MountPoint.model_validate({"container_path": "/d", "host_path": "/fastData/d", "create_host_path": True})
    assert created.create_host_path and plain.model_dump() == created.model_dump()


def test_safety_problems_are_all_reported_before_the_host_is_touched(cfg: Path):
    edit(cfg, lambda c: (c["910"].update(mount_points=[{"container_path": "/", "host_path": "/etc"}]),
                         c["950"].update(features=["../x"], feature_timeout_s=INF, description="x" * 7000)))
    edit_hypervisor(cfg, lambda d: d["proxmox"].update(timeout_s=NAN))
    found = problems(cfg)
    assert len(found) == 6, found
    assert not any(os.path.exists(p) for p in ("/fastData/x",))
    assert json.loads((cfg / "etc" / LXC).read_text())["lxc_configs"]["910"]["mount_points"][0]["host_path"] == "/etc"
