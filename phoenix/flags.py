"""Explicit permissions a person gives one run, through the environment (never a config default)."""

from __future__ import annotations

import os

ALLOW_PROTECTED = "PHOENIX_DESTROY_PROTECTED"
PRUNE_STACKS = "PHOENIX_PRUNE_STACKS"


PULL_IMAGES = "PHOENIX_PULL_IMAGES"


def pull_images() -> bool:
    """The explicit flag PHOENIX_PULL_IMAGES=1: a stack redeployed now pulls its images again (Portainer's PullImage)."""
    return os.environ.get(PULL_IMAGES, "") not in ("", "0", "no", "false")


def prune_stacks() -> bool:
    """The explicit flag PHOENIX_PRUNE_STACKS=1: remove the stacks Phoenix deployed that no guest lists any more."""
    return os.environ.get(PRUNE_STACKS, "") not in ("", "0", "no", "false")


def protected_allowed(vmid: int) -> bool:
    """The explicit flag: PHOENIX_DESTROY_PROTECTED=950,920 (or ct950, or 'all')."""
    value = os.environ.get(ALLOW_PROTECTED, "")
    names = {v.strip().removeprefix("ct") for v in value.split(",") if v.strip()}
    return "all" in names or str(vmid) in names
