"""The lock of vLLM's transitive dependencies (images/locks/): it pins the configured version, the vllm feature installs
under it (as uv constraints), it is part of the vllm layer's identity, and it can be made again.

Everything but the last two tests runs offline: the lock is committed."""

from __future__ import annotations

import os
import re
import shutil
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
    """images/ copied, next to the project's stacks/ and cloudinit/ (the config names compose files relative to the
    project; the VMs' cloud-init templates are checked with the config)."""
    images = tmp_path / "images"
    shutil.copytree(IMAGES, images)
    (tmp_path / "stacks").symlink_to(REPO / "stacks")
    (tmp_path / "cloudinit").symlink_to(REPO / "cloudinit")
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


# Making the lock again reads PyPI as it is today: what it serves changes with the day (a release after a mirror caught
# up, a yanked one), so the default suite never does it. `python -m phoenix.tools.lock_vllm --check` is the explicit
# command; this test runs it when asked for (PHOENIX_NETWORK_TESTS=1).
NETWORK = os.environ.get("PHOENIX_NETWORK_TESTS") == "1"


@pytest.mark.skipif(not NETWORK, reason="reads PyPI as it is today: set PHOENIX_NETWORK_TESTS=1 (or run "
                                        "python -m phoenix.tools.lock_vllm --check)")
def test_making_the_lock_again_gives_the_committed_one():
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    assert Path(uv).exists(), "uv is in the test extra"
    assert lock_vllm.check("0.10.1.1", IMAGES, uv) == []


def test_check_names_each_package_a_new_lock_would_change():
    committed = the_lock().read_text()
    assert lock_vllm.changes(committed, committed) == []
    found = pins(committed)
    name = next(n for n in found if n not in ("vllm", "torch"))
    bumped = re.sub(rf"(?m)^{re.escape(name)}==[^ ]+", f"{name}==999.0", committed, count=1)
    dropped = re.sub(r"(?ms)^fastapi==.*?(?=^[a-z])", "", committed, count=1)
    assert lock_vllm.changes(committed, bumped) == [f"{name} {found[name]} -> 999.0"]
    assert lock_vllm.changes(committed, dropped) == [f"fastapi {found['fastapi']} removed"]
    assert lock_vllm.changes(committed, committed.replace("    # via", "    #  via", 1)) == \
        ["the same pins and hashes, other text (comments, order)"]
    rehashed = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, committed, count=1)
    first = next(iter(lock_vllm.entries(committed)))
    assert lock_vllm.changes(committed, rehashed) == [f"{first} {lock_vllm.entries(committed)[first][0]}: other files (hashes)"]


def test_the_lock_command_checks_and_refreshes_with_a_cutoff(tmp_path):
    """--check makes the lock in a temporary directory with the committed cutoff; --exclude-newer moves the cutoff
    (the uv it runs is a stand-in that writes the committed lock with one pin moved on: no network)."""
    uv = tmp_path / "uv"
    seen = tmp_path / "argv"
    uv.write_text(f"""#!/bin/sh
echo "$@" >> {seen}
out=""; prev=""
for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done
sed 's/^fastapi==[^ ]*/fastapi==999.0/' {the_lock()} > "$out"
""")
    uv.chmod(0o755)
    images = copy_images(tmp_path)
    lock_path = images / "locks" / the_lock().name
    out = subprocess.run([sys.executable, "-m", "phoenix.tools.lock_vllm", "--uv", str(uv), "--check", "--images-dir",
                          str(images), "0.10.1.1"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 1, out.stderr
    assert f"fastapi {pins(the_lock().read_text())['fastapi']} -> 999.0" in out.stdout
    assert lock_path.read_text() == the_lock().read_text()            # a check writes nothing under images/
    assert f"--exclude-newer {lock_vllm.EXCLUDE_NEWER}" in seen.read_text()
    out = subprocess.run([sys.executable, "-m", "phoenix.tools.lock_vllm", "--uv", str(uv), "--exclude-newer",
                          "2027-01-01T00:00:00Z", "--images-dir", str(images), "0.10.1.1"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert pins(lock_path.read_text())["fastapi"] == "999.0"            # refreshed in place
    assert "--exclude-newer 2027-01-01T00:00:00Z" in seen.read_text().splitlines()[-1]


def test_the_uv_that_vllm_sh_pins_is_the_one_installed():
    """The test extra pins the guest's uv, so pip found it on the index; the installed uv is that version."""
    text = (IMAGES / SCRIPT).read_text()
    version = re.search(r'VLLM_UV_VERSION="\$\{VLLM_UV_VERSION:-([0-9.]+)\}"', text).group(1)
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    assert Path(uv).exists(), "uv is in the test extra"
    r = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True)
    assert r.stdout.split()[:2] == ["uv", version]


def test_the_tests_parse_the_lock_with_the_uv_that_vllm_sh_pins():
    """The test extra installs the same uv the guest uses, so the offline parse above checks what the bake will run."""
    text = (IMAGES / SCRIPT).read_text()
    version = re.search(r'VLLM_UV_VERSION="\$\{VLLM_UV_VERSION:-([0-9.]+)\}"', text).group(1)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"uv=={version}"' in pyproject
