"""nvidia.sh's main end to end, with stand-ins where there is no GPU: the .run installers served over HTTP from
127.0.0.1 (fetched by the real curl), an nvidia-smi that reports what the stand-in installer installed, a libcuda.so.1
built here whose cuInit answers what the test says (the real python3 ctypes probe loads it), and device nodes in a
directory of the test's own. Install, rerun without change, a version change over two stacked old versions, the
datacenter (tesla) tree, a checksum, and missing uvm nodes."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import make_context, need_tool

SCRIPT = "features/nvidia.sh"

LIBCUDA_C = r"""
#include <stdlib.h>
int cuInit(unsigned int flags) { const char *e = getenv("FAKE_CU_INIT"); return e ? atoi(e) : 0; }
int cuDeviceGetCount(int *count) { const char *e = getenv("FAKE_CU_COUNT"); *count = e ? atoi(e) : 1; return 0; }
"""

# The stand-in .run: install pushes its version on a stack and leaves an nvidia-installer that uninstalls the top
# and then removes itself (as the real one does); `--uninstall` from any .run pops the top too.
RUN = r"""#!/bin/sh
case " $* " in
  *" --uninstall "*)
    top=$(tail -n1 "$STATE/stack" 2>/dev/null); [ -n "$top" ] || exit 1
    echo "uninstall $top by-run-$VERSION" >> "$STATE/calls"
    rm -f "$LIBDIR/libnvidia-ml.so.$top"; sed -i '$d' "$STATE/stack"; rm -f "$BINDIR/nvidia-installer"; exit 0 ;;
esac
echo "install $VERSION $*" >> "$STATE/calls"
touch "$LIBDIR/libnvidia-ml.so.$VERSION"; cp "$STATE/libcuda.so.1" "$LIBDIR/libcuda.so.1"
echo "$VERSION" >> "$STATE/stack"
cat > "$BINDIR/nvidia-installer" <<'EOS'
#!/bin/sh
top=$(tail -n1 "$STATE/stack"); echo "uninstall $top by-installer" >> "$STATE/calls"
rm -f "$LIBDIR/libnvidia-ml.so.$top"; sed -i '$d' "$STATE/stack"; rm -f "$0"
EOS
chmod 755 "$BINDIR/nvidia-installer"
"""

NVIDIA_SMI = r"""#!/bin/sh
v=$(ls "$LIBDIR" | sed -n 's/^libnvidia-ml\.so\.//p')
[ -n "$v" ] && [ "$(echo "$v" | wc -l)" = 1 ] || { echo "Failed to initialize NVML: Driver/library version mismatch"; exit 9; }
i=0; for g in $(cat "$STATE/gpus"); do echo "$i, Stand-in GPU, $v"; i=$((i+1)); done
"""


@dataclass
class Node:
    root: Path
    env: dict[str, str]
    requests: list[str]

    def put_run(self, version: str, tree: str = "XFree86") -> Path:
        rel = (f"XFree86/Linux-x86_64/{version}" if tree == "XFree86" else f"tesla/{version}")
        path = self.root / "www" / rel / f"NVIDIA-Linux-x86_64-{version}.run"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(RUN.replace("$VERSION", version))
        return path

    def calls(self) -> list[str]:
        f = self.root / "state" / "calls"
        return f.read_text().splitlines() if f.exists() else []

    def installed(self) -> list[str]:
        return sorted(p.name.removeprefix("libnvidia-ml.so.") for p in (self.root / "lib").glob("libnvidia-ml.so.*"))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    need_tool("gcc")          # builds the stand-in libcuda.so.1
    need_tool("curl")
    if os.uname().machine != "x86_64":
        pytest.skip("the stand-in installers are x86_64 ones")
    state, lib, bin_, dev, www = (tmp_path / n for n in ("state", "lib", "bin", "dev", "www"))
    for d in (state, lib, bin_, dev, www, tmp_path / "tmp"):
        d.mkdir()
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(state / "libcuda.so.1"), "-x", "c", "-"],
                   input=LIBCUDA_C, text=True, check=True)
    (state / "gpus").write_text("0\n")
    (bin_ / "nvidia-smi").write_text(NVIDIA_SMI)
    (bin_ / "nvidia-smi").chmod(0o755)
    for n in ("nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"):
        (dev / n).touch()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(www), **kw)

        def log_request(self, code="-", size="-"):
            requests.append(f"{self.command} {self.path} {code}")

        def log_message(self, fmt, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"PATH": f"{bin_}:{os.environ['PATH']}", "STATE": str(state), "LIBDIR": str(lib), "BINDIR": str(bin_),
           "NVIDIA_LIB_PATH": str(lib), "NVIDIA_DEV_DIR": str(dev), "LD_LIBRARY_PATH": str(lib),
           "NVIDIA_DOWNLOAD_HOST": f"http://127.0.0.1:{server.server_address[1]}", "TMPDIR": str(tmp_path / "tmp"),
           "no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"}
    yield Node(tmp_path, env, requests)
    server.shutdown()


def run_main(shell, node: Node, version: str, check: bool = True, **nvidia):
    ctx = make_context(gpus=[0], nvidia={"driver_version": version, **nvidia})
    # apt is not under test: the tools it would install are on this machine
    return shell.run(SCRIPT, "phx_apt_install() { :; }\nmain", context=ctx, env=node.env, check=check)


def test_install_then_nothing_to_change(shell, node):
    node.put_run("580.76.05")
    first = run_main(shell, node, "580.76.05")
    assert node.calls() == ["install 580.76.05 --silent --no-kernel-module --no-nouveau-check --no-x-check "
                            "--no-systemd --no-check-for-alternate-installs --no-backup"]
    assert "nvidia-smi sees the assigned GPUs (0) on driver 580.76.05" in first.stdout
    assert "CUDA initialises and sees 1 GPU(s)" in first.stdout
    second = run_main(shell, node, "580.76.05")
    assert second.stdout.strip().splitlines()[-1] == "nvidia: nothing to change"
    assert len(node.requests) == 1 and len(node.calls()) == 1
    assert list((node.root / "tmp").iterdir()) == []


def test_a_version_change_removes_two_stacked_old_versions(shell, node):
    """The first uninstall removes nvidia-installer: the second must use the new version's .run."""
    for v in ("550.54.14", "570.133.07", "580.76.05"):
        node.put_run(v)
    run_main(shell, node, "550.54.14")
    # a second install over the first, as a half-finished upgrade leaves it: two versions' libraries
    subprocess.run(["sh", str(node.root / "www/XFree86/Linux-x86_64/570.133.07/NVIDIA-Linux-x86_64-570.133.07.run"),
                    "--silent"], env=node.env, check=True)
    assert node.installed() == ["550.54.14", "570.133.07"]
    r = run_main(shell, node, "580.76.05")
    assert node.calls()[2:] == ["uninstall 570.133.07 by-installer", "uninstall 550.54.14 by-run-580.76.05",
                                "install 580.76.05 --silent --no-kernel-module --no-nouveau-check --no-x-check "
                                "--no-systemd --no-check-for-alternate-installs --no-backup"]
    assert node.installed() == ["580.76.05"]
    assert "CUDA initialises" in r.stdout


def test_a_datacenter_driver_comes_from_the_tesla_tree(shell, node):
    node.put_run("580.95.05", tree="tesla")
    r = run_main(shell, node, "580.95.05")
    assert [q.split()[1] for q in node.requests] == [
        "/XFree86/Linux-x86_64/580.95.05/NVIDIA-Linux-x86_64-580.95.05.run",
        "/tesla/580.95.05/NVIDIA-Linux-x86_64-580.95.05.run"]
    assert node.installed() == ["580.95.05"] and "CUDA initialises" in r.stdout


def test_an_unpublished_version_names_both_urls(shell, node):
    r = run_main(shell, node, "580.1.2", check=False)
    assert r.returncode == 1 and "cannot download driver 580.1.2" in r.stderr and "/tesla/580.1.2/" in r.stderr
    assert list((node.root / "tmp").iterdir()) == []


def test_the_checksum_is_verified_and_a_failure_leaves_no_temporary_files(shell, node):
    run = node.put_run("580.76.05")
    good = hashlib.sha256(run.read_bytes()).hexdigest()
    bad = run_main(shell, node, "580.76.05", check=False, installer_sha256="0" * 64)
    assert bad.returncode == 1 and f"installer checksum mismatch: expected {'0' * 64}, got {good}" in bad.stderr
    assert node.calls() == [] and list((node.root / "tmp").iterdir()) == []
    ok = run_main(shell, node, "580.76.05", installer_sha256=good)
    assert "installer sha256 verified" in ok.stdout and node.installed() == ["580.76.05"]


@pytest.mark.parametrize("uvm", ["nvidia-uvm", "nvidia-uvm-tools"])
def test_missing_uvm_fails_before_anything_is_installed(shell, node, uvm):
    node.put_run("580.76.05")
    (node.root / "dev" / uvm).unlink()
    r = run_main(shell, node, "580.76.05", check=False)
    assert r.returncode == 1 and f"missing device nodes: {node.root}/dev/{uvm}" in r.stderr
    assert node.requests == [] and node.calls() == []


@pytest.mark.parametrize(("env", "message"), [
    ({"FAKE_CU_INIT": "999"}, "cuInit failed: CUDA_ERROR_UNKNOWN: usually /dev/nvidia-uvm missing"),
    ({"FAKE_CU_INIT": "100"}, "cuInit failed: no CUDA device visible"),
    ({"FAKE_CU_COUNT": "2"}, "CUDA sees 2 GPU(s), expected 1"),
])
def test_the_cuda_smoke_test_fails_the_layer(shell, node, env, message):
    node.put_run("580.76.05")
    node.env.update(env)
    r = run_main(shell, node, "580.76.05", check=False)
    assert r.returncode == 1 and message in r.stderr
    assert "nvidia-smi sees the assigned GPUs" in r.stdout     # nvidia-smi alone would have said yes
