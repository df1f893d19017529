"""The lock of vLLM's transitive dependencies (images/locks/): it pins the configured version, the vllm feature installs
under it (as uv constraints), it is part of the vllm layer's identity, and it can be made again.

Everything but the last two tests runs offline: the lock is committed."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from phoenix.config.estate import load_estate
from phoenix.kinds.lxc import checks
from phoenix.kinds.lxc.datafiles import feature_files
from phoenix.kinds.lxc.resources import resources
from phoenix.locks import LOCK_PLATFORM, LOCK_PYTHON, vllm_lock_name
from phoenix.tools import lock_vllm

from .conftest import IMAGES, REPO, make_context
from .test_feat_vllm import fake_venv

SCRIPT = "features/vllm.sh"
# what vllm.sh's vllm_constraints keeps of the lock, stated here as the tests' expectation: these follow the CUDA build
# chosen on the guest, pinned by version only (their wheels on PyTorch's index differ from PyPI's) ...
CUDA_BUILD = frozenset({"torch", "torchvision", "torchaudio", "triton", "xformers"})
CUDA_LIBRARY = re.compile(r"^nvidia-[a-z0-9-]+-cu[0-9]+$")  # ... and these are left out: that torch wheel pins them
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(text: str) -> dict[str, str]:
    """The name==version pins of a requirements lock (names normalised), in file order."""
    return {re.sub(r"[-_.]+", "-", m.group(1)).lower(): m.group(2) for line in text.splitlines() if (m := _PIN.match(line))}


def vllm_guests(estate):
    return {c: g for c, g in estate.guests.items() if "vllm" in g.features}


def the_lock() -> Path:
    estate = load_estate(REPO / "etc", IMAGES)
    (ctid,) = vllm_guests(estate)
    (path,) = feature_files(estate, ctid, "vllm").values()
    return path


def test_the_lock_pins_exactly_the_configured_vllm_version():
    estate = load_estate(REPO / "etc", IMAGES)
    assert vllm_guests(estate), "the example estate runs the vllm feature"
    for ctid, g in vllm_guests(estate).items():
        version = g.app.vllm.version
        (path,) = feature_files(estate, ctid, "vllm").values()
        assert path == IMAGES / "locks" / vllm_lock_name(version) == IMAGES / "locks" / f"vllm-{version}-py312.txt"
        text = path.read_text()
        found = pins(text)
        assert found["vllm"] == version, ctid
        assert f"python -m phoenix.tools.lock_vllm {version}" in text.splitlines()[1]   # how to make it again
        assert {"torch", "transformers", "xformers"} <= set(found)     # transitive, not just vLLM
        entries = [line for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
        assert all(line.endswith(" \\") for line in entries), "every pin carries its sha256 hashes"


def constraints(shell) -> str:
    return shell.run(SCRIPT, f"vllm_constraints '{the_lock()}'").stdout


def test_constraints_keep_every_pin_and_hash_but_what_follows_the_cuda_build(shell):
    lock_text, out = the_lock().read_text(), constraints(shell)
    lock, got = pins(lock_text), pins(out)
    cuda_libraries = {n for n in lock if CUDA_LIBRARY.match(n)}
    assert cuda_libraries and not cuda_libraries & set(got)               # left to the torch wheel of the chosen build
    assert got == {n: v for n, v in lock.items() if n not in cuda_libraries}
    lines = out.splitlines()
    for name in CUDA_BUILD & set(lock):                                   # version only: that build's files differ
        assert f"{name}=={lock[name]}" in lines
    hashes = set(re.findall(r"sha256:[0-9a-f]{64}", out))
    assert hashes and hashes <= set(re.findall(r"sha256:[0-9a-f]{64}", lock_text))
    for entry in re.split(r"\n(?=[A-Za-z0-9])", lock_text):   # one pin with its hash lines
        name = entry.split("==", 1)[0]
        if name in got and name not in CUDA_BUILD:
            assert set(re.findall(r"sha256:[0-9a-f]{64}", entry)) <= hashes, name  # the rest keeps its hashes
    assert not any(line.startswith("#") or "# via" in line for line in lines)
    assert all(line.endswith(" \\") or "--hash" in line or "==" in line for line in lines)


def test_uv_reads_the_constraints_offline(shell, tmp_path):
    """uv parses the constraints (hashes and all) and resolves vLLM's pins against an empty local index: it fails only
    on the missing distribution, never on the file."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed (pip install uv)")
    (tmp_path / "c.txt").write_text(constraints(shell))
    (tmp_path / "index").mkdir()
    r = subprocess.run([uv, "pip", "compile", "-", "--no-config", "--offline", "--no-index", "--find-links",
                        str(tmp_path / "index"), "-c", str(tmp_path / "c.txt"), "--python-version", LOCK_PYTHON,
                        "--python-platform", LOCK_PLATFORM], input="vllm==0.10.1.1\n", text=True, capture_output=True,
                       cwd=tmp_path)
    assert r.returncode == 1 and "vllm was not found in the provided package locations" in r.stderr, r.stderr


def test_a_lock_of_another_version_is_refused(shell, tmp_path):
    venv = fake_venv(tmp_path, "True 2 12.8")
    ctx = make_context(gpus=[0, 1], vllm={"version": "0.11.0", "lock": str(the_lock())})
    r = shell.run(SCRIPT, "main", context=ctx, env={"VLLM_VENV": str(venv)}, check=False)
    assert r.returncode == 1 and "pins vllm '0.10.1.1', not 0.11.0" in r.stderr


def test_a_missing_lock_is_refused_before_anything_is_installed(shell, tmp_path):
    ctx = make_context(gpus=[0, 1], vllm={"lock": str(tmp_path / "vllm-0.10.1.1-py312.txt")})
    r = shell.run(SCRIPT, "main", context=ctx, env={"VLLM_VENV": str(tmp_path / "venv")}, check=False)
    assert r.returncode == 1 and "is not in the guest" in r.stderr and "lock_vllm 0.10.1.1" in r.stderr
    assert not (tmp_path / "venv").exists()


def test_the_guests_python_must_be_the_locks(shell, tmp_path):
    py = tmp_path / "python3"
    py.write_text("#!/bin/sh\necho 3.11\n")
    py.chmod(0o755)
    r = shell.run(SCRIPT, f"vllm_check_python '{the_lock()}' '{py}'", check=False)
    assert r.returncode == 1 and "is for Python 3.12" in r.stderr and "is Python 3.11" in r.stderr


def test_installed_packages_that_differ_from_the_lock_fail_the_layer(shell, tmp_path):
    venv = fake_venv(tmp_path, "True 2 12.8", fastapi="0.1.0")
    r = shell.run(SCRIPT, "main", context=make_context(gpus=[0, 1], vllm={"lock": str(the_lock())}),
                  env={"VLLM_VENV": str(venv)}, check=False)
    locked = pins(the_lock().read_text())["fastapi"]
    assert r.returncode == 1 and f"fastapi 0.1.0 (locked: {locked})" in r.stderr
    assert "installed packages differ from the lock" in r.stderr


def inputs_by_ctid(images: Path) -> dict[int, dict[str, str]]:
    return {r.vmid: r.inputs for r in resources(load_estate(REPO / "etc", images)).values()}


def copy_images(tmp_path: Path) -> Path:
    """images/ copied, next to the project's stacks/ (the config names compose files relative to the project)."""
    images = tmp_path / "images"
    shutil.copytree(IMAGES, images)
    (tmp_path / "stacks").symlink_to(REPO / "stacks")
    return images


def test_the_lock_is_part_of_the_vllm_layers_identity(tmp_path):
    images = copy_images(tmp_path)
    before = inputs_by_ctid(images)
    assert before[920][f"file:{the_lock().name}"]
    lock = images / "locks" / the_lock().name
    lock.write_text(lock.read_text().replace("\nfastapi==", "\n# relocked\nfastapi==", 1))
    after = inputs_by_ctid(images)
    assert [c for c in before if before[c] != after[c]] == [920]   # 950 follows through 920's new build id


def test_a_missing_lock_stops_the_build_before_anything_is_written(tmp_path):
    images = copy_images(tmp_path)
    (images / "locks" / the_lock().name).unlink()
    estate = load_estate(REPO / "etc", images)
    found = checks.script_problems(estate, 920)
    assert len(found) == 1 and "python -m phoenix.tools.lock_vllm 0.10.1.1" in found[0], found
    assert checks.script_problems(estate, 950) == []      # the app layer installs no vLLM of its own
    assert inputs_by_ctid(images)[920][f"file:{the_lock().name}"] == "missing"


def test_the_compile_command_is_reproducible():
    cmd = lock_vllm.compile_command("uv", "0.10.1.1", Path("out.txt"))
    assert cmd[:4] == ["uv", "pip", "compile", "-"]
    for flag, value in (("--python-version", "3.12"), ("--python-platform", "x86_64-manylinux_2_39"),
                        ("--exclude-newer", lock_vllm.EXCLUDE_NEWER), ("--index-url", "https://pypi.org/simple")):
        assert cmd[cmd.index(flag) + 1] == value
    assert "--generate-hashes" in cmd and "--no-config" in cmd


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


needs_pypi = pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable: the lock is committed, this only "
                                                             "checks that it can be made again")


@needs_pypi
def test_making_the_lock_again_gives_the_committed_one(tmp_path):
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed (pip install uv)")
    out = lock_vllm.lock("0.10.1.1", tmp_path, uv)
    assert out.read_text() == the_lock().read_text()


@needs_pypi
def test_the_uv_that_vllm_sh_pins_is_on_pypi():
    text = (IMAGES / SCRIPT).read_text()
    version = re.search(r'VLLM_UV_VERSION="\$\{VLLM_UV_VERSION:-([0-9.]+)\}"', text).group(1)
    r = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "uv", "--index-url", "https://pypi.org/simple"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert version in re.split(r"[,\s]+", r.stdout.split("Available versions:", 1)[1])


def test_the_tests_parse_the_lock_with_the_uv_that_vllm_sh_pins():
    """The test extra installs the same uv the guest uses, so the offline parse above checks what the bake will run."""
    text = (IMAGES / SCRIPT).read_text()
    version = re.search(r'VLLM_UV_VERSION="\$\{VLLM_UV_VERSION:-([0-9.]+)\}"', text).group(1)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"uv=={version}"' in pyproject
