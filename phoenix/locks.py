"""Lock files of the Python environments feature scripts install (images/locks/): names and what they pin (pure).

The vllm feature installs vLLM with uv under a lock resolved for the guest's Python (3.12, Ubuntu 24.04) and glibc
(2.39): `vllm-<version>-py312.txt`, made by `python -m phoenix.tools.lock_vllm`. Only the packages that follow the
PyTorch CUDA build chosen on the guest (--torch-backend) are pinned by version without their PyPI hashes, and the
CUDA libraries (nvidia-*-cuNN) not at all: the torch wheel of that build pins them exactly.
"""

from __future__ import annotations

import re

LOCKS_DIR = "locks"                    # under images/
LOCK_PYTHON = "3.12"                   # Ubuntu 24.04's python3
LOCK_PLATFORM = "x86_64-manylinux_2_39"  # Ubuntu 24.04's glibc
# follow the CUDA build: pinned by version only (their wheels on PyTorch's index differ from PyPI's)
CUDA_BUILD = frozenset({"torch", "torchvision", "torchaudio", "triton", "xformers"})
CUDA_LIBRARY = re.compile(r"^nvidia-[a-z0-9-]+-cu[0-9]+$")  # pinned by the torch wheel of the chosen build
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def vllm_lock_name(version: str) -> str:
    """vllm-0.10.1.1-py312.txt: the lock of that vLLM version for the guest's Python."""
    return f"vllm-{version}-py{LOCK_PYTHON.replace('.', '')}.txt"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """The name==version pins of a requirements lock (names normalised), in file order."""
    return {normalize(m.group(1)): m.group(2) for line in text.splitlines() if (m := _PIN.match(line))}
