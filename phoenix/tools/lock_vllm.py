"""Make the lock of vLLM's transitive dependencies that the vllm feature installs under (images/locks/).

    python -m phoenix.tools.lock_vllm [--config-dir etc] [--images-dir images] [VERSION ...]

Without a VERSION it locks every vLLM version the config's vllm guests use. It runs `uv pip compile` (uv from PyPI,
`pip install uv`) against PyPI for Python 3.12 on x86_64 glibc 2.39 (Ubuntu 24.04), with every file's sha256, and
ignores anything uploaded after EXCLUDE_NEWER: the same command gives the same lock later. Commit the lock; changing
it rebakes the layers that run the vllm feature (and their clones).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from ..locks import LOCK_PLATFORM, LOCK_PYTHON, LOCKS_DIR, vllm_lock_name

INDEX = "https://pypi.org/simple"
EXCLUDE_NEWER = "2026-11-28T00:00:00Z"   # move it on (and relock) to take newer dependency releases


def compile_command(uv: str, version: str, output: Path) -> list[str]:
    """The `uv pip compile` command line of a lock (pure): the requirement comes on stdin."""
    return [uv, "pip", "compile", "-", "--no-config", "--index-url", INDEX, "--python-version", LOCK_PYTHON,
            "--python-platform", LOCK_PLATFORM, "--generate-hashes", "--exclude-newer", EXCLUDE_NEWER,
            "--custom-compile-command", f"python -m phoenix.tools.lock_vllm {version}", "--quiet", "-o", str(output)]


def configured_versions(config_dir: Path, images_dir: Path) -> list[str]:
    from ..config.estate import load_estate

    estate = load_estate(config_dir, images_dir)
    return sorted({g.app.vllm.version for g in estate.guests.values() if "vllm" in g.features})


def lock(version: str, images_dir: Path, uv: str) -> Path:
    output = images_dir / LOCKS_DIR / vllm_lock_name(version)
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(compile_command(uv, version, output), input=f"vllm=={version}\n", text=True, check=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phoenix.tools.lock_vllm", description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", metavar="VERSION")
    parser.add_argument("--config-dir", type=Path, default=Path("etc"))
    parser.add_argument("--images-dir", type=Path, default=Path("images"))
    args = parser.parse_args(argv)
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        print("uv not found: pip install uv", file=sys.stderr)
        return 2
    versions = args.versions or configured_versions(args.config_dir, args.images_dir)
    for version in versions:
        print(f"wrote {lock(version, args.images_dir, uv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
