"""The features really run: base_setup and docker in a Debian 12 chroot, twice each (the second run changes nothing)."""

from __future__ import annotations

import pytest

from .conftest import IMAGES, make_context

pytestmark = pytest.mark.slow

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPhoenixTestKeyOnlyNotReal phoenix@test"
WATCHED = ("/etc", "/home", "/var/lib/dpkg/status", "/usr/lib/locale", "/opt/phoenix/lib")
CONTEXT = make_context(
    timezone="Europe/Berlin",
    locale="en_US.UTF-8",
    extra_packages=["less", "file"],
    unattended_upgrades=True,
    user={"username": "phoenix", "ssh_public_key": SSH_KEY, "sudo": True},
    docker={"user": "phoenix"},
    secrets=["docker_token"],
)


@pytest.fixture(scope="module", params=["debian12", "debian13"])
def guest(request):
    """Both targets: Debian 12, and Debian 13 (closer to Ubuntu 24.04's Docker, runc and Python)."""
    factory = request.getfixturevalue("guest_factory" if request.param == "debian12" else "trixie_guest_factory")
    return factory(CONTEXT, {"docker_token": "phxuser:dckr_pat_NOT_A_REAL_TOKEN"})


def dpkg_installed(guest, package: str) -> bool:
    r = guest.sh(f"dpkg-query -W -f='${{Status}}' {package}", check=False)
    return r.stdout == "install ok installed"


def run_base(guest):
    if "base_setup" not in guest.done:
        guest.run_script(IMAGES / "features/base_setup.sh")
        guest.done.add("base_setup")


def test_base_setup_installs_then_changes_nothing(guest):
    first = guest.run_script(IMAGES / "features/base_setup.sh")
    guest.done.add("base_setup")
    assert "base_setup: nothing to change" not in first.stdout
    for pkg in ("ca-certificates", "curl", "jq", "locales", "tzdata", "less", "file", "unattended-upgrades",
                "sudo", "openssh-server"):
        assert dpkg_installed(guest, pkg), pkg
    assert "en_US.utf8" in guest.sh("locale -a").stdout.split()
    assert guest.path("/etc/default/locale").read_text() == "LANG=en_US.UTF-8\n"
    assert guest.sh("readlink /etc/localtime").stdout.strip() == "/usr/share/zoneinfo/Europe/Berlin"
    assert guest.path("/etc/timezone").read_text() == "Europe/Berlin\n"
    assert 'Unattended-Upgrade "1"' in guest.path("/etc/apt/apt.conf.d/20auto-upgrades").read_text()
    assert guest.sh("id -u phoenix").returncode == 0
    keys = guest.path("/home/phoenix/.ssh/authorized_keys")
    assert keys.read_text() == SSH_KEY + "\n"
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    assert guest.sh("stat -c %U:%G /home/phoenix/.ssh /home/phoenix/.ssh/authorized_keys").stdout.split() == [
        "phoenix:phoenix", "phoenix:phoenix"]
    sudoers = guest.path("/etc/sudoers.d/phoenix-phoenix")
    assert oct(sudoers.stat().st_mode & 0o777) == "0o440"
    assert guest.sh("visudo -cq").returncode == 0

    before = guest.fingerprint(*WATCHED)
    second = guest.run_script(IMAGES / "features/base_setup.sh")
    assert second.stdout.strip().splitlines()[-1] == "base_setup: nothing to change"
    assert "installing" not in second.stdout and "apt-get update" not in second.stdout
    after = guest.fingerprint(*WATCHED)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}


def test_docker_installs_then_changes_nothing(guest):
    run_base(guest)
    first = guest.run_script(IMAGES / "features/docker.sh")
    assert "docker: nothing to change" not in first.stdout
    assert dpkg_installed(guest, "docker.io")
    assert not dpkg_installed(guest, "nvidia-container-toolkit")
    assert "no GPUs assigned" in first.stdout
    assert "docker.service enabled but not started" in first.stdout
    assert "systemd is not running: the daemon and its smoke test run when the container boots" in first.stdout
    assert not guest.path("/root/.docker/config.json").exists()      # no login is saved in a template
    assert "docker" in guest.sh("id -nG phoenix").stdout.split()
    assert guest.path("/etc/systemd/system/multi-user.target.wants/docker.service").is_symlink()
    assert "NOT_A_REAL_TOKEN" not in first.stdout + first.stderr

    before = guest.fingerprint(*WATCHED)
    second = guest.run_script(IMAGES / "features/docker.sh")
    assert second.stdout.strip().splitlines()[-1] == "docker: nothing to change"
    assert "installing" not in second.stdout
    after = guest.fingerprint(*WATCHED)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
