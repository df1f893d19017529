"""The JSON schemas of the config files, generated from the models: `python -m phoenix.config.schema etc/`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from .files import HYPERVISOR, LXC, STACKS, VM
from .hypervisor import HypervisorConfig
from .lxc import LxcConfigs
from .stacks import StacksConfig
from .vm import VmConfigs

MODELS: dict[str, type[BaseModel]] = {HYPERVISOR: HypervisorConfig, LXC: LxcConfigs, STACKS: StacksConfig,
                                      VM: VmConfigs}


def schema_text(stem: str) -> str:
    schema = MODELS[stem].model_json_schema(by_alias=True)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{stem}.schema.json", **schema}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write(directory: Path) -> list[Path]:
    out = []
    for stem in MODELS:
        path = Path(directory) / f"{stem}.schema.json"
        path.write_text(schema_text(stem))
        out.append(path)
    return out


if __name__ == "__main__":
    for p in write(Path(sys.argv[1] if len(sys.argv) > 1 else "etc")):
        print(f"wrote {p}")
