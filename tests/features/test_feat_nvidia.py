"""nvidia.sh logic without a GPU: installer URL/arguments, installed-version detection, recorded nvidia-smi outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES = Path(__file__).parent / "samples"
SCRIPT = "features/nvidia.sh"


def check(shell, assigned: str, driver: str, sample: str):
    return shell.run(SCRIPT, f'nvidia_check_gpus "{assigned}" "{driver}" < "{SAMPLES / sample}"', check=False)


def test_two_gpus_as_assigned(shell):
    r = check(shell, "0,1", "580.76.05", "query_2gpus.csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["nvidia: GPU 0: NVIDIA GeForce RTX 5060 Ti, driver 580.76.05",
                                     "nvidia: GPU 1: NVIDIA GeForce RTX 5060 Ti, driver 580.76.05"]


def test_driver_mismatch(shell):
    r = check(shell, "0,1", "580.76.05", "query_driver_mismatch.csv")
    assert r.returncode == 1
    assert "GPU 0 (NVIDIA GeForce RTX 5060 Ti) runs driver 575.64.03, expected 580.76.05" in r.stderr


def test_no_devices(shell):
    r = check(shell, "0,1", "580.76.05", "query_no_devices.txt")
    assert r.returncode == 1
    assert "nvidia-smi: No devices were found" in r.stderr


def test_nvml_library_mismatch(shell):
    r = check(shell, "0", "580.76.05", "query_nvml_mismatch.txt")
    assert r.returncode == 1
    assert "Driver/library version mismatch" in r.stderr


def test_empty_output_means_no_gpu(shell):
    r = shell.run(SCRIPT, 'nvidia_check_gpus "0,1" 580.76.05 < /dev/null', check=False)
    assert r.returncode == 1 and "sees no GPU; expected 2 (0,1)" in r.stderr


def test_more_gpus_than_assigned(shell):
    r = check(shell, "1", "580.76.05", "query_2gpus.csv")
    assert r.returncode == 1 and "sees 2 GPU(s) (0 1); expected 1 (1)" in r.stderr


def test_fewer_gpus_than_assigned(shell):
    r = check(shell, "0,1", "580.76.05", "query_1gpu.csv")
    assert r.returncode == 1 and "sees 1 GPU(s) (0); expected 2 (0,1)" in r.stderr


def test_single_gpu_renumbered_inside_the_container(shell):
    """GPU 1 of the host passed alone: NVML in the container numbers it 0."""
    assert check(shell, "1", "580.76.05", "query_1gpu.csv").returncode == 0


def test_wrong_indexes(shell):
    r = shell.run(SCRIPT, 'nvidia_check_gpus "0,2" 580.76.05 <<< $\'1, A, 580.76.05\\n3, B, 580.76.05\'', check=False)
    assert r.returncode == 1 and "sees GPUs 1,3; expected 0,2" in r.stderr


@pytest.mark.parametrize(("version", "arch", "urls"), [
    ("580.76.05", "x86_64",
     ["https://us.download.nvidia.com/XFree86/Linux-x86_64/580.76.05/NVIDIA-Linux-x86_64-580.76.05.run",
      "https://us.download.nvidia.com/tesla/580.76.05/NVIDIA-Linux-x86_64-580.76.05.run"]),
    ("570.133.07", "aarch64",
     ["https://us.download.nvidia.com/XFree86/aarch64/570.133.07/NVIDIA-Linux-aarch64-570.133.07.run",
      "https://us.download.nvidia.com/tesla/570.133.07/NVIDIA-Linux-aarch64-570.133.07.run"]),
])
def test_run_urls(shell, version, arch, urls):
    assert shell.run(SCRIPT, f"nvidia_run_urls {version} {arch}").stdout.split() == urls


def test_run_arch(shell):
    r = shell.run(SCRIPT, "nvidia_run_arch x86_64; nvidia_run_arch arm64; nvidia_run_arch ppc64le || echo unsupported")
    assert r.stdout.split() == ["x86_64", "aarch64", "unsupported"]


def test_run_args_never_build_a_kernel_module(shell):
    args = shell.run(SCRIPT, "nvidia_run_args").stdout.split()
    assert "--no-kernel-module" in args and "--silent" in args
    assert not any(a.startswith("--kernel-source") or a == "--dkms" for a in args)


@pytest.mark.parametrize(("version", "ok"), [("580.76.05", True), ("550.54", True), ("580", False),
                                             ("580.76.05; rm -rf /", False), ("", False)])
def test_valid_version(shell, version, ok):
    r = shell.run(SCRIPT, f"nvidia_valid_version '{version}'", check=False)
    assert (r.returncode == 0) == ok


def test_versions_from_libs(shell):
    libs = ("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so\n/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\n"
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.76.05\n/usr/lib/x86_64-linux-gnu/libcuda.so.580.76.05\n"
            "/usr/lib64/libnvidia-ml.so.550.54.14\n")
    r = shell.run(SCRIPT, "nvidia_versions_from_libs", stdin=libs)
    assert r.stdout.split() == ["550.54.14", "580.76.05"]


def test_device_nodes(shell, tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    for n in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"):
        (dev / n).touch()
    assert shell.run(SCRIPT, f'nvidia_check_device_nodes "{dev}" "0,1"', check=False).returncode == 0
    r = shell.run(SCRIPT, f'nvidia_check_device_nodes "{dev}" "0,2"', check=False)
    assert r.returncode == 1 and f"{dev}/nvidia2" in r.stderr
    for uvm in ("nvidia-uvm", "nvidia-uvm-tools"):
        (dev / uvm).unlink()
        r = shell.run(SCRIPT, f'nvidia_check_device_nodes "{dev}" "0,1"', check=False)
        assert r.returncode == 1 and f"{dev}/{uvm}" in r.stderr and "nvidia-modprobe -c0 -u" in r.stderr
        (dev / uvm).touch()


def test_main_refuses_without_driver_version(shell):
    from .conftest import make_context
    ctx = make_context(gpus=[0], nvidia={"driver_version": None})
    r = shell.run(SCRIPT, "main", context=ctx, check=False)
    assert r.returncode == 1 and "host driver version is unknown" in r.stderr
