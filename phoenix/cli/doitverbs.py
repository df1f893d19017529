"""Verbs that are doit runs: the seeds' `create`, `LetsGo`, `setup-hypervisor`, `sync`, and `plan`, mapped onto the
estate's tasks and run by doit's own main in this process (the same reporter, summary and .cache/last-run.json)."""

from __future__ import annotations

from typing import Any

from ..errors import PhoenixError
from .targets import UnknownTarget, did_you_mean, of_kind, resolve


def create(run: Any, words: list[str]) -> list[str]:
    """`phoenix create 950 vllmQwen3Coder`: those guests and whatever they need."""
    if not words:
        raise PhoenixError("create what? name a guest: its id (950), its name or its task (ct950); see `phoenix status`")
    return [resolve(run.resources, w).key for w in words]


def setup_hypervisor(run: Any) -> list[str]:
    tasks = of_kind(run.resources, "host:")
    if not tasks:
        raise PhoenixError(f"{run.config_dir}: the hypervisor config declares no host parts (a `host` section): "
                           "there is nothing to set up on the node")
    return tasks


def sync(run: Any, words: list[str]) -> list[str]:
    """`sync portainer`: the Portainer server, its environments and every stack; `sync stack NAME to ID`: one stack."""
    if words[:1] == ["portainer"] and len(words) == 1:
        tasks = of_kind(run.resources, "portainer:") + of_kind(run.resources, "stack:")
        if not tasks:
            raise PhoenixError("the estate has no Portainer and no stacks to sync (no portainer_api, no docker_stacks)")
        return tasks
    if len(words) == 4 and words[0] == "stack" and words[2] == "to":
        guest = resolve(run.resources, words[3])
        key = f"stack:{words[1]}@{guest.vmid}"
        if key not in run.resources:
            here = [k.split(":", 1)[1].rsplit("@", 1)[0] for k in of_kind(run.resources, "stack:")
                    if k.endswith(f"@{guest.vmid}")]
            known = ", ".join(here) or "none"
            raise UnknownTarget(f"no stack {words[1]!r} on {guest.key} in the estate (its stacks: {known})"
                                f"{did_you_mean(words[1], here)}")
        return [key]
    raise UnknownTarget("usage: phoenix sync portainer | phoenix sync stack NAME to ID")
