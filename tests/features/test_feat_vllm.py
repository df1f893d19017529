"""vllm.sh: the CUDA build chosen from the host driver (recorded nvidia-smi outputs), and pip arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES = Path(__file__).parent / "samples"
SCRIPT = "features/vllm.sh"


@pytest.mark.parametrize(("sample", "cuda"), [("smi_580.txt", "13.0"), ("smi_550.txt", "12.4"),
                                              ("query_no_devices.txt", "")])
def test_cuda_from_nvidia_smi(shell, sample, cuda):
    assert shell.run(SCRIPT, f'vllm_cuda_from_smi < "{SAMPLES / sample}"').stdout.strip() == cuda


@pytest.mark.parametrize(("driver", "cuda"), [
    ("580.76.05", "13.0"), ("575.64.03", "12.9"), ("570.133.07", "12.8"), ("570.26", "12.8"),
    ("565.57.01", "12.6"), ("560.28.03", "12.6"), ("550.54.14", "12.4"), ("550.54.13", "12.3"),
    ("535.183.01", "12.2"), ("525.60.13", "12.0"), ("520.61.05", "11.8"),
])
def test_driver_max_cuda(shell, driver, cuda):
    assert shell.run(SCRIPT, f"vllm_driver_max_cuda {driver}").stdout.strip() == cuda


def test_driver_too_old(shell):
    assert shell.run(SCRIPT, "vllm_driver_max_cuda 470.256.02", check=False).returncode == 1


@pytest.mark.parametrize(("version", "cuda", "variant"), [
    ("0.10.1.1", "13.0", "cu128"),     # newer driver: the release's default build
    ("0.10.1.1", "12.8", "cu128"),
    ("0.10.1.1", "12.6", "cu126"),     # older driver: the older CUDA build of the same release
    ("0.10.1.1", "12.4", None),        # no build for it
    ("0.8.5", "12.6", "cu124"),
    ("0.8.5", "12.2", "cu118"),
    ("0.6.3", "12.4", "cu121"),
    ("0.11.2", "12.9", "cu129"),
    ("0.11.2", "12.8", "cu128"),
])
def test_choose_variant(shell, version, cuda, variant):
    r = shell.run(SCRIPT, f"vllm_choose_variant {version} {cuda}", check=False)
    if variant is None:
        assert r.returncode == 1
    else:
        assert r.stdout.strip() == variant


def test_variant_cuda(shell):
    assert shell.run(SCRIPT, "vllm_variant_cuda cu128; vllm_variant_cuda cu118").stdout.split() == ["12.8", "11.8"]


def test_pip_args_default_build(shell):
    args = shell.run(SCRIPT, "vllm_pip_args 0.10.1.1 cu128 x86_64").stdout.splitlines()
    assert args == ["vllm==0.10.1.1", "--extra-index-url", "https://download.pytorch.org/whl/cu128"]


def test_pip_args_release_wheel(shell):
    args = shell.run(SCRIPT, "vllm_pip_args 0.10.1.1 cu126 x86_64").stdout.splitlines()
    assert args == ["https://github.com/vllm-project/vllm/releases/download/v0.10.1.1/"
                    "vllm-0.10.1.1+cu126-cp38-abi3-manylinux1_x86_64.whl",
                    "--extra-index-url", "https://download.pytorch.org/whl/cu126"]


def test_pip_args_release_wheel_only_x86(shell):
    assert shell.run(SCRIPT, "vllm_pip_args 0.10.1.1 cu126 aarch64", check=False).returncode == 1


@pytest.mark.parametrize(("installed", "wanted", "ok"), [
    ("0.10.1.1", "0.10.1.1", True), ("0.10.1.1+cu126", "0.10.1.1", True), ("0.10.1", "0.10.1.1", False),
    ("", "0.10.1.1", False),
])
def test_version_matches(shell, installed, wanted, ok):
    r = shell.run(SCRIPT, f"vllm_version_matches '{installed}' '{wanted}'", check=False)
    assert (r.returncode == 0) == ok


def test_already_installed_is_nothing_to_change(shell, tmp_path):
    """A venv whose vllm has the pinned version: main does nothing and says so."""
    from .conftest import make_context
    venv = tmp_path / "venv"
    site = venv / "lib" / "site"
    (site / "vllm-0.10.1.1.dist-info").mkdir(parents=True)
    (site / "vllm-0.10.1.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.10.1.1\n")
    (venv / "bin").mkdir()
    py = venv / "bin" / "python"
    py.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec python3 "$@"\n')
    py.chmod(0o755)
    r = shell.run(SCRIPT, "main", context=make_context(gpus=[0, 1]), env={"VLLM_VENV": str(venv)})
    assert r.stdout.splitlines() == ["vllm: vLLM 0.10.1.1 already in " + str(venv), "vllm: nothing to change"]
