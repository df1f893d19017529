"""Phoenix: the Proxmox estate as doit tasks. `doit`, `doit plan`, `doit list`, `doit info ct950`."""

from pathlib import Path

from phoenix.doitx.tasks import setup

DOIT_CONFIG, task_resources = setup(Path(__file__).parent)
