"""Explicit permissions a person gives one run, through the environment (never a config default)."""

from __future__ import annotations

import os

ALLOW_PROTECTED = "PHOENIX_DESTROY_PROTECTED"


def protected_allowed(vmid: int) -> bool:
    """The explicit flag: PHOENIX_DESTROY_PROTECTED=950,920 (or ct950, or 'all')."""
    value = os.environ.get(ALLOW_PROTECTED, "")
    names = {v.strip().removeprefix("ct") for v in value.split(",") if v.strip()}
    return "all" in names or str(vmid) in names
