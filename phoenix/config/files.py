"""The config files Phoenix reads: their stems and the suffixes accepted.

Kept apart from the models so that a run which finds its validated config in .cache/ needs no pydantic.
"""

HYPERVISOR = "phoenix_hypervisor_config"
LXC = "phoenix_lxc_configs"
SUFFIXES = (".json", ".yaml", ".yml")
