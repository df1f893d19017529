"""vllm.sh: vLLM's documented install (uv, --torch-backend), the pinned version, and the PyTorch check that ends it
(a stand-in python answers what torch would)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import make_context

SCRIPT = "features/vllm.sh"


def test_install_args_are_vllms_documented_command_under_the_lock(shell):
    r = shell.run(SCRIPT, "vllm_install_args 0.11.0 auto /opt/vllm/bin/python /tmp/c.txt")
    assert r.stdout.split() == ["pip", "install", "--python", "/opt/vllm/bin/python", "vllm==0.11.0",
                                "--torch-backend=auto", "--constraints", "/tmp/c.txt"]


def test_no_wheel_table_is_kept():
    """The table of CUDA builds and wheel names went stale (0.11 has no cu126 wheel; manylinux_2_xx tags)."""
    text = (Path(__file__).resolve().parents[2] / "images" / SCRIPT).read_text()
    assert "manylinux" not in text and "download.pytorch.org" not in text and "--extra-index-url" not in text


@pytest.mark.parametrize(("variant", "backend"), [("", "auto"), ("auto", "auto"), ("cu128", "cu128"), ("cu130", "cu130")])
def test_torch_backend(shell, variant, backend):
    assert shell.run(SCRIPT, f'vllm_torch_backend "{variant}"').stdout.strip() == backend


@pytest.mark.parametrize("variant", ["cuda12", "cu12", "cu128; rm -rf /"])
def test_torch_backend_refuses_nonsense(shell, variant):
    r = shell.run(SCRIPT, f"vllm_torch_backend '{variant}'", check=False)
    assert r.returncode == 1 and "invalid vllm torch variant" in r.stderr


@pytest.mark.parametrize(("installed", "wanted", "ok"), [
    ("0.10.1.1", "0.10.1.1", True), ("0.10.1.1+cu126", "0.10.1.1", True), ("0.10.1", "0.10.1.1", False),
    ("", "0.10.1.1", False),
])
def test_version_matches(shell, installed, wanted, ok):
    r = shell.run(SCRIPT, f"vllm_version_matches '{installed}' '{wanted}'", check=False)
    assert (r.returncode == 0) == ok


def fake_venv(tmp_path: Path, torch_says: str, **packages: str) -> Path:
    """A venv whose vllm is 0.10.1.1 (real metadata, read by the real python3) and whose `import torch` prints torch_says."""
    venv = tmp_path / "venv"
    site = venv / "lib" / "site"
    (site / "vllm-0.10.1.1.dist-info").mkdir(parents=True)
    (site / "vllm-0.10.1.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.10.1.1\n")
    for name, version in packages.items():
        (site / f"{name}-{version}.dist-info").mkdir()
        (site / f"{name}-{version}.dist-info" / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (site / "torch").mkdir()
    (site / "torch" / "__init__.py").write_text(
        "class _C:\n    pass\ncuda = _C()\nversion = _C()\n"
        f"_a, _n, _v = {torch_says!r}.split()\n"
        "cuda.is_available = lambda: _a == 'True'\ncuda.device_count = lambda: int(_n)\nversion.cuda = _v\n")
    (venv / "bin").mkdir()
    py = venv / "bin" / "python"
    py.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec python3 -S "$@"\n')   # -S: this machine's packages unseen
    py.chmod(0o755)
    return venv


LOCK = Path(__file__).resolve().parents[2] / "images" / "locks" / "vllm-0.10.1.1-py312.txt"


def lock_context(**over):
    return make_context(vllm={"lock": str(LOCK)}, **over)


def test_already_installed_is_nothing_to_change(shell, tmp_path):
    venv = fake_venv(tmp_path, "True 2 12.8")
    r = shell.run(SCRIPT, "main", context=lock_context(gpus=[0, 1]), env={"VLLM_VENV": str(venv)})
    assert r.stdout.splitlines() == ["vllm: vLLM 0.10.1.1 already in " + str(venv),
                                     "vllm: installed packages match the lock",
                                     "vllm: PyTorch sees CUDA 12.8 and 2 GPU(s)", "vllm: nothing to change"]


@pytest.mark.parametrize(("torch_says", "message"), [
    ("False 0 12.8", "PyTorch does not see CUDA"),
    ("True 1 12.8", "PyTorch sees 1 GPU(s), expected 2"),
])
def test_the_layer_fails_when_torch_does_not_see_the_gpus(shell, tmp_path, torch_says, message):
    venv = fake_venv(tmp_path, torch_says)
    r = shell.run(SCRIPT, "main", context=lock_context(gpus=[0, 1]), env={"VLLM_VENV": str(venv)}, check=False)
    assert r.returncode == 1 and message in r.stderr
