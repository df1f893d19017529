"""Limits the config is checked against, with no pydantic: run-time code (the layer record) may import them.

Every number here is said in the message of the check that uses it.
"""

# A guest's description: Proxmox takes at most PVE_DESCRIPTION_MAX characters, and Phoenix keeps RECORD_BUDGET
# of them for its layer record, so what a user writes may have at most DESCRIPTION_MAX_BYTES UTF-8 bytes.
PVE_DESCRIPTION_MAX = 8192
RECORD_BUDGET = 2048
DESCRIPTION_MAX_BYTES = PVE_DESCRIPTION_MAX - RECORD_BUDGET

# Upper bounds of the timeouts, in seconds.
HTTP_TIMEOUT_MAX_S = 600             # one HTTP request to the API (10 minutes)
SSH_CONNECT_TIMEOUT_MAX_S = 600      # opening an SSH connection (10 minutes)
TASK_TIMEOUT_MAX_S = 24 * 3600       # one Proxmox task (1 day)
SCRIPT_TIMEOUT_MAX_S = 7 * 24 * 3600  # one feature or app script (7 days)

# A guest's memory and swap, in MB (4 TiB): a larger number is a typo that Proxmox would refuse mid-build.
MEMORY_MAX_MB = 4 * 1024 * 1024

# A feature or app script is named, never given as a path: images/features/<name>.sh, images/apps/<name>.
SCRIPT_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"


def human_seconds(seconds: float) -> str:
    """604800 -> '7 days', 600 -> '10 minutes', 90 -> '90 seconds'."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds:g} seconds"
