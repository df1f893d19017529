"""images/host/nvidia.sh, the node's driver install, run against a directory standing in for the node's root, with
stand-ins for the commands it calls (nvidia-smi answers what the stand-in installer installed; apt-get, curl,
modprobe, update-initramfs record what they were asked). No driver is built and nothing outside the test's
directory changes. The stand-ins are named as such; what is under test is the script's own logic."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "images" / "host" / "nvidia.sh"
LIB = REPO / "images" / "lib" / "phoenix-common.sh"

STANDINS = {
    # nvidia-smi: what the stand-in installer installed; the GPUs a test put in $STATE/gpus
    "nvidia-smi": '''#!/bin/sh
[ -f "$STATE/version" ] || { echo "NVIDIA-SMI has failed" >&2; exit 9; }
case "$*" in
  *driver_version*) for i in $(cat "$STATE/gpus"); do cat "$STATE/version"; done ;;
  *index*) for i in $(cat "$STATE/gpus"); do echo "$i"; done ;;
esac''',
    "nvidia-uninstall": '''#!/bin/sh
echo "uninstall $(cat "$STATE/version")" >> "$STATE/calls"; rm -f "$STATE/version"''',
    "nvidia-modprobe": '''#!/bin/sh
echo "nvidia-modprobe $*" >> "$STATE/calls"
[ -f "$STATE/no-uvm" ] || { [ -c "$ROOT/dev/nvidia-uvm" ] || mknod "$ROOT/dev/nvidia-uvm" c 195 254; }
[ -c "$ROOT/dev/nvidiactl" ] || mknod "$ROOT/dev/nvidiactl" c 195 255''',
    "modprobe": '#!/bin/sh\necho "modprobe $*" >> "$STATE/calls"',
    "update-initramfs": '#!/bin/sh\necho "update-initramfs $*" >> "$STATE/calls"',
    "dpkg-query": '#!/bin/sh\nfor p in "$@"; do :; done; grep -qx "$p" "$STATE/pkgs" 2>/dev/null && echo "install ok installed"',
    "apt-get": '''#!/bin/sh
echo "apt-get $*" >> "$STATE/calls"
for a in "$@"; do case "$a" in -*|install|update) ;; *) echo "$a" >> "$STATE/pkgs" ;; esac; done''',
    "curl": '''#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -o) out="$2"; shift ;; http*) url="$1" ;; esac; shift; done
echo "curl $url" >> "$STATE/calls"; cp "$STATE/installer.run" "$out"''',
}
INSTALLER = '#!/bin/sh\necho "installer $*" >> "$STATE/calls"\necho "{version}" > "$STATE/version"\n'


@pytest.fixture
def node(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("the stand-in nvidia-modprobe makes device nodes (mknod): run as root, as CI does")
    root, state, bin_ = tmp_path / "root", tmp_path / "state", tmp_path / "bin"
    for d in (root / "dev", state, bin_):
        d.mkdir(parents=True)
    for name, body in STANDINS.items():
        (bin_ / name).write_text(body + "\n")
        (bin_ / name).chmod(0o755)
    (state / "gpus").write_text("0 1\n")
    return root, state, bin_


def run(node, version: str = "580.76.05", sha: str | None = None, gpus: str = "0,1") -> subprocess.CompletedProcess:
    root, state, bin_ = node
    installer = INSTALLER.format(version=version)
    (state / "installer.run").write_text(installer)
    sha = hashlib.sha256(installer.encode()).hexdigest() if sha is None else sha
    ctx = state.parent / "context.env"
    ctx.write_text(f"PHX_DRIVER_VERSION='{version}'\nPHX_INSTALLER_URL='https://example.invalid/NVIDIA-{version}.run'\n"
                   f"PHX_INSTALLER_SHA256='{sha}'\nPHX_GPUS='{gpus}'\n")
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "STATE": str(state), "ROOT": str(root), "PHOENIX_HOST_ROOT": str(root),
           "PHOENIX_HOST_WORK": str(state / "work"), "PHOENIX_ENV": str(ctx), "PHOENIX_LIB": str(LIB)}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def calls(node) -> list[str]:
    f = node[1] / "calls"
    return f.read_text().splitlines() if f.exists() else []


def test_a_fresh_node_gets_the_driver_then_a_rerun_changes_nothing(node):
    first = run(node)
    assert first.returncode == 0, first.stdout + first.stderr
    done = calls(node)
    assert "curl https://example.invalid/NVIDIA-580.76.05.run" in done
    assert any(c.startswith("installer --silent --dkms") for c in done)
    assert any("proxmox-default-headers" in c for c in done if c.startswith("apt-get"))
    assert "update-initramfs -u -k all" in done
    assert {"modprobe nvidia", "modprobe nvidia_uvm", "modprobe nvidia_modeset"} <= set(done)
    root = node[0]
    assert (root / "etc/modprobe.d/phoenix-blacklist-nouveau.conf").read_text() == "blacklist nouveau\noptions nouveau modeset=0\n"
    assert (root / "etc/modules-load.d/phoenix-nvidia.conf").read_text() == "nvidia\nnvidia_uvm\nnvidia_modeset\n"
    assert "driver 580.76.05, GPUs: 0 1" in first.stdout
    (node[1] / "calls").unlink()
    again = run(node)
    assert again.returncode == 0 and "nvidia: nothing to change" in again.stdout, again.stdout
    assert not any(c.startswith(("curl", "installer", "apt-get", "update-initramfs")) for c in calls(node))


def test_another_version_is_uninstalled_first(node):
    assert run(node, "550.54.14").returncode == 0
    (node[1] / "calls").unlink()
    result = run(node, "580.76.05")
    assert result.returncode == 0, result.stdout + result.stderr
    done = calls(node)
    assert done.index("uninstall 550.54.14") < next(i for i, c in enumerate(done) if c.startswith("installer"))


def test_a_wrong_checksum_installs_nothing(node):
    result = run(node, sha="0" * 64)
    assert result.returncode == 1 and "installer checksum mismatch" in result.stderr
    assert not any(c.startswith("installer") for c in calls(node))
    assert not (node[1] / "work").exists() or not any((node[1] / "work").iterdir())  # the download is cleaned up


def test_a_gpu_the_config_expects_and_the_uvm_node_are_checked(node):
    (node[1] / "gpus").write_text("0\n")
    result = run(node, gpus="0,1")
    assert result.returncode == 1 and "GPU 1 is not seen by nvidia-smi (it sees: 0)" in result.stderr
    (node[1] / "gpus").write_text("0 1\n")
    (node[1] / "no-uvm").write_text("")
    (node[0] / "dev" / "nvidia-uvm").unlink()
    result = run(node)
    assert result.returncode == 1 and "/dev/nvidia-uvm is missing" in result.stderr
