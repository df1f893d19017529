"""Lock files of the Python environments feature scripts install (images/locks/): their names (pure).

The vllm feature installs vLLM with uv under a lock resolved for the guest's Python (3.12, Ubuntu 24.04) and glibc
(2.39): `vllm-<version>-py312.txt`, made by `python -m phoenix.tools.lock_vllm`. How the feature reads it (the
packages that follow the PyTorch CUDA build chosen on the guest) is images/features/vllm.sh's vllm_constraints.
"""

from __future__ import annotations

LOCKS_DIR = "locks"                    # under images/
LOCK_PYTHON = "3.12"                   # Ubuntu 24.04's python3
LOCK_PLATFORM = "x86_64-manylinux_2_39"  # Ubuntu 24.04's glibc


def vllm_lock_name(version: str) -> str:
    """vllm-0.10.1.1-py312.txt: the lock of that vLLM version for the guest's Python."""
    return f"vllm-{version}-py{LOCK_PYTHON.replace('.', '')}.txt"
