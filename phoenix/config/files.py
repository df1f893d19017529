"""The config files Phoenix reads: their stems, the suffixes accepted, and how paths in them resolve.

Kept apart from the models so that a run which finds its validated config in .cache/ needs no pydantic.
"""

from pathlib import Path

HYPERVISOR = "phoenix_hypervisor_config"
LXC = "phoenix_lxc_configs"
VM = "phoenix_vm_configs"  # optional: an estate without VMs has no such file
STACKS = "phoenix_stacks_config"  # optional
SUFFIXES = (".json", ".yaml", ".yml")


def resolve(config_dir: Path, path: str) -> Path:
    """A path from the config: ~ expanded, relative to the config dir."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else config_dir / p
