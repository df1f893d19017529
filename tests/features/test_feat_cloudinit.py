"""Rendered cloud-init files really work: Debian 12's cloud-init (22.4) runs against a NoCloud seed made from
the files Phoenix renders for the example VMs, in a chroot of a Debian 12 root file system (unshare: own mount,
UTS, network, IPC and PID namespaces; no network, so nothing is fetched). Every network-config is converted
with `cloud-init devel net-convert`.

There is no systemd running in a chroot: a `systemctl` stand-in in /usr/local/sbin records what runcmd asks of it
(the test asserts the call); everything else is Debian's own.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from phoenix.cloudinit import write as W
from phoenix.config.estate import load_estate

from .conftest import CACHE, CI, GUEST_PATH, REPO

pytestmark = pytest.mark.slow  # builds a Debian root with cloud-init

CLOUDINIT_VERSION = "v1"  # bump to rebuild the cached root file system
PACKAGES = ("cloud-init", "qemu-guest-agent", "sudo")


def _chroot(root: Path, command: str, *, network: bool = False, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """command in a chroot of root, in namespaces of its own (no network unless asked), /proc and /dev mounted."""
    inner = (f'mount -t proc proc "$R/proc" && mount --rbind /dev "$R/dev" && chroot "$R" /usr/bin/env -i '
             f'PATH={GUEST_PATH} HOME=/root /bin/sh -c "$CMD"')
    flags = ["-m", "-u", "-i", "-p", "-f", "--mount-proc"] + ([] if network else ["-n"])
    return subprocess.run(["unshare", *flags, "sh", "-c", inner], env={**os.environ, "R": str(root), "CMD": command},
                          text=True, capture_output=True, timeout=timeout)


@pytest.fixture(scope="session")
def cloudinit_tarball(debian12_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian 12 minbase with cloud-init, qemu-guest-agent and sudo: built once (needs the mirror), then cached."""
    if not shutil.which("unshare"):
        pytest.skip("unshare not found")
    target = CACHE / f"debian12-cloudinit-{CLOUDINIT_VERSION}.tar.gz"
    with open(CACHE / "rootfs-cloudinit.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            root = tmp_path_factory.mktemp("ci-build") / "root"
            root.mkdir()
            subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xzpf", str(debian12_tarball)], check=True)
            shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
            done = _chroot(root, "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                                 f"--no-install-recommends {' '.join(PACKAGES)} && apt-get clean", network=True,
                           timeout=1800)
            if done.returncode != 0:
                message = f"cannot install cloud-init in the root file system:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
                if CI:
                    pytest.fail(message)
                pytest.skip(message)
            part = target.with_name(target.name + ".part")
            subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-czf", str(part), "."], check=True)
            part.rename(target)
    return target


@pytest.fixture
def vm_root(cloudinit_tarball: Path, tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xzpf", str(cloudinit_tarball)], check=True)
    (root / "etc/cloud/cloud.cfg.d/99-phoenix-test.cfg").write_text("datasource_list: [NoCloud, None]\nlocale: C.UTF-8\n")
    stand_in = root / "usr/local/sbin/systemctl"
    stand_in.write_text('#!/bin/sh\necho "$*" >> /var/log/phoenix-systemctl.log\n')
    stand_in.chmod(0o755)
    yield root


def rendered(vmid: int) -> dict[str, str]:
    estate = load_estate(REPO / "etc", REPO / "images")
    return W.render_checked(estate, vmid, instance_id=f"phx-{vmid}-test", read=lambda p: "").files


def test_rendered_user_data_takes_effect_under_debian_cloud_init(vm_root: Path):
    seed = vm_root / "var/lib/cloud/seed/nocloud"
    seed.mkdir(parents=True)
    for name, text in rendered(1002).items():
        (seed / name).write_text(text)
    done = _chroot(vm_root, "cloud-init init --local && cloud-init init && cloud-init modules --mode=config && "
                            "cloud-init modules --mode=final; cloud-init status --long")
    assert "status: done" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    assert (vm_root / "etc/hostname").read_text().strip() == "qdrant-db"
    passwd = (vm_root / "etc/passwd").read_text()
    assert "\nphoenix:" in passwd and ":/home/phoenix:/bin/bash" in passwd
    keys = (vm_root / "home/phoenix/.ssh/authorized_keys").read_text()
    assert keys.startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPhoenixExample")
    sudoers = "".join(p.read_text() for p in (vm_root / "etc/sudoers.d").iterdir())
    assert "phoenix ALL=(ALL) NOPASSWD:ALL" in sudoers
    vm_json = vm_root / "etc/phoenix/vm.json"
    assert oct(vm_json.stat().st_mode & 0o777) == "0o644" and '"layer": "vm1002"' in vm_json.read_text()
    assert "enable --now qemu-guest-agent" in (vm_root / "var/log/phoenix-systemctl.log").read_text()
    iid = (vm_root / "var/lib/cloud/data/instance-id").read_text().strip()
    assert iid == "phx-1002-test"


def test_every_rendered_network_config_converts(vm_root: Path):
    for vmid in (9000, 9001, 1001, 1002):
        (vm_root / f"tmp/net-{vmid}.yml").write_text(rendered(vmid)["network-config"])
        done = _chroot(vm_root, f"cloud-init devel net-convert -p /tmp/net-{vmid}.yml -k yaml -D debian "
                                f"-O networkd -d /tmp/out-{vmid}")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        units = "".join(p.read_text() for p in (vm_root / f"tmp/out-{vmid}").rglob("*.network"))
        if vmid == 9000:
            assert "DHCP=ipv4" in units, units
        else:
            assert "Address=10.0.0." in units and "Gateway=10.0.0.1" in units, units
