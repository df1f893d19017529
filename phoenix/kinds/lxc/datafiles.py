"""The data files a container's feature scripts read (the vllm feature's lock): delivered into the guest with the
script, under /opt/phoenix/files, and part of the layer's identity, so a changed lock rebakes the layer (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...locks import LOCKS_DIR, vllm_lock_name

if TYPE_CHECKING:
    from ...config.estate import Estate


def feature_files(estate: Estate, ctid: int, feature: str) -> dict[str, Path]:
    """{name in the guest: local path} of the files that feature reads on this guest."""
    g = estate.guests[ctid]
    if feature == "vllm":
        name = vllm_lock_name(g.app.vllm.version)
        return {name: estate.library.root / LOCKS_DIR / name}
    return {}


def guest_files(estate: Estate, ctid: int) -> dict[str, Path]:
    """Every data file of the features this guest runs itself."""
    out: dict[str, Path] = {}
    for feature in estate.guests[ctid].features:
        out.update(feature_files(estate, ctid, feature))
    return out


def missing_problems(estate: Estate, ctid: int) -> list[str]:
    """The data files that are not in the checkout, each with the command that makes it."""
    out = []
    for feature in estate.guests[ctid].features:
        for path in feature_files(estate, ctid, feature).values():
            if not path.is_file() and feature == "vllm":
                version = estate.guests[ctid].app.vllm.version
                out.append(f"the vllm feature installs vLLM {version} under the lock {path}, which does not exist: make "
                           f"it with `python -m phoenix.tools.lock_vllm {version}` (needs uv and PyPI) and commit it")
    return out
