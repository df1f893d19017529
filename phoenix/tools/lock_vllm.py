"""Make, check or refresh the lock of vLLM's transitive dependencies that the vllm feature installs under (images/locks/).

    python -m phoenix.tools.lock_vllm [VERSION ...]                 make the lock (as of EXCLUDE_NEWER)
    python -m phoenix.tools.lock_vllm --check [VERSION ...]         make it again elsewhere and compare (exit 1: differs)
    python -m phoenix.tools.lock_vllm --exclude-newer DATE VERSION  refresh it: take what was uploaded up to DATE

Without a VERSION it works on every vLLM version the config's vllm guests use. It runs `uv pip compile` (uv from PyPI,
`pip install uv`) against PyPI for Python 3.12 on x86_64 glibc 2.39 (Ubuntu 24.04), with every file's sha256, and
ignores anything uploaded after the cutoff (EXCLUDE_NEWER; move it on when you refresh). All three need PyPI: no test
of the default suite runs them, since what an index serves changes with the day (a mirror that lagged behind, a release
yanked); the suite tests what the committed lock promises instead. Commit the lock; changing it rebakes the layers that
run the vllm feature (and their clones).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..locks import LOCK_PLATFORM, LOCK_PYTHON, LOCKS_DIR, vllm_lock_name

INDEX = "https://pypi.org/simple"
EXCLUDE_NEWER = "2026-11-28T00:00:00Z"   # move it on (and relock) to take newer dependency releases
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"sha256:[0-9a-f]{64}")


def compile_command(uv: str, version: str, output: Path, exclude_newer: str = EXCLUDE_NEWER) -> list[str]:
    """The `uv pip compile` command line of a lock (pure): the requirement comes on stdin."""
    return [uv, "pip", "compile", "-", "--no-config", "--index-url", INDEX, "--python-version", LOCK_PYTHON,
            "--python-platform", LOCK_PLATFORM, "--generate-hashes", "--exclude-newer", exclude_newer,
            "--custom-compile-command", f"python -m phoenix.tools.lock_vllm {version}", "--quiet", "-o", str(output)]


def entries(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """A requirements lock's pins: normalised name -> (version, its sha256 hashes) (pure)."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = _PIN.match(block)
        if m:
            name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
            out[name] = (m.group(2), frozenset(_HASH.findall(block)))
    return out


def changes(committed: str, made: str) -> list[str]:
    """What a lock made again changes against the committed one, one line a package (pure; [] when the same)."""
    old, new = entries(committed), entries(made)
    out = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            out.append(f"{name} {old[name][0]} removed")
        elif name not in old:
            out.append(f"{name} {new[name][0]} added")
        elif old[name][0] != new[name][0]:
            out.append(f"{name} {old[name][0]} -> {new[name][0]}")
        elif old[name][1] != new[name][1]:
            out.append(f"{name} {old[name][0]}: other files (hashes)")
    if not out and committed != made:
        out.append("the same pins and hashes, other text (comments, order)")
    return out


def configured_versions(config_dir: Path, images_dir: Path) -> list[str]:
    from ..config.estate import load_estate

    estate = load_estate(config_dir, images_dir)
    return sorted({g.app.vllm.version for g in estate.guests.values() if "vllm" in g.features})


def lock(version: str, images_dir: Path, uv: str, exclude_newer: str = EXCLUDE_NEWER) -> Path:
    output = images_dir / LOCKS_DIR / vllm_lock_name(version)
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(compile_command(uv, version, output, exclude_newer), input=f"vllm=={version}\n", text=True,
                   check=True)
    return output


def check(version: str, images_dir: Path, uv: str, exclude_newer: str = EXCLUDE_NEWER) -> list[str]:
    """Make the lock again in a temporary directory: what differs from the committed one ([] when nothing)."""
    committed = images_dir / LOCKS_DIR / vllm_lock_name(version)
    if not committed.is_file():
        return [f"{committed} is not there: make it with `python -m phoenix.tools.lock_vllm {version}`"]
    with tempfile.TemporaryDirectory(prefix="phoenix-lock-") as tmp:
        made = lock(version, Path(tmp), uv, exclude_newer)
        return changes(committed.read_text(), made.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phoenix.tools.lock_vllm", description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", metavar="VERSION")
    parser.add_argument("--config-dir", type=Path, default=Path("etc"))
    parser.add_argument("--images-dir", type=Path, default=Path("images"))
    parser.add_argument("--check", action="store_true", help="make each lock again elsewhere and compare it with the "
                                                              "committed one; exit 1 when it differs")
    parser.add_argument("--exclude-newer", default=EXCLUDE_NEWER, metavar="DATE",
                        help=f"take only what was uploaded before DATE (default {EXCLUDE_NEWER}, the committed locks')")
    parser.add_argument("--uv", metavar="PATH", help="the uv to run (default: uv on PATH, else beside this Python)")
    args = parser.parse_args(argv)
    uv = args.uv or shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        print("uv not found: pip install uv", file=sys.stderr)
        return 2
    versions = args.versions or configured_versions(args.config_dir, args.images_dir)
    rc = 0
    for version in versions:
        try:
            if args.check:
                found = check(version, args.images_dir, uv, args.exclude_newer)
                name = vllm_lock_name(version)
                if found:
                    rc = 1
                    print(f"{name}: made again, it differs from the committed lock:", *(f"  {c}" for c in found), sep="\n")
                else:
                    print(f"{name}: made again, the same as the committed lock")
            else:
                print(f"wrote {lock(version, args.images_dir, uv, args.exclude_newer)}")
        except subprocess.CalledProcessError as e:
            print(f"uv pip compile failed (exit {e.returncode}) for vllm {version}: see its output above", file=sys.stderr)
            return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
