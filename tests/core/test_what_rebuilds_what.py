"""The README's table "What rebuilds what", row by row, against fakepve over HTTPS: each change a user makes to the
config or the scripts, then `doit plan` and the run; what is rebaked (destroyed and built again, with every layer
cloned from it) and what is updated in place (one config PUT, plus `pct set` for root-only settings)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import ALL_TASKS, NODE, Checkout


def guest(ctid: int, **changes: Any) -> Callable[[Checkout], None]:
    return lambda co: co.edit_guest(ctid, **changes)


def deep(ctid: int, key: str, change: Callable[[Any], None]) -> Callable[[Checkout], None]:
    def edit(co: Checkout) -> None:
        data = co.lxc_config()
        change(data["lxc_configs"][str(ctid)].setdefault(key, {}))
        co.write_lxc_config(data)
    return edit


def every_guest(**changes: Any) -> Callable[[Checkout], None]:
    def edit(co: Checkout) -> None:
        data = co.lxc_config()
        for config in data["lxc_configs"].values():
            config.update(changes)
        co.write_lxc_config(data)
    return edit


def script(relative: str) -> Callable[[Checkout], None]:
    def edit(co: Checkout) -> None:
        path = co.root / "images" / relative
        path.write_text(path.read_text() + "\n# changed\n")
    return edit


def os_template(co: Checkout) -> None:
    path = co.root / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    data["os_templates"]["ubuntu-24.04"]["volume"] = "local:vztmpl/ubuntu-24.04-standard_24.04-3_amd64.tar.zst"
    data["os_templates"]["ubuntu-24.04"]["url"] = ("http://download.proxmox.com/images/system/"
                                                   "ubuntu-24.04-standard_24.04-3_amd64.tar.zst")
    path.write_text(json.dumps(data))


def hypervisor(section: str | None, **changes: Any) -> Callable[[Checkout], None]:
    def edit(co: Checkout) -> None:
        path = co.root / "etc" / "phoenix_hypervisor_config.json"
        data = json.loads(path.read_text())
        (data[section] if section else data).update(changes)
        path.write_text(json.dumps(data))
    return edit


def other_storage(co: Checkout) -> None:
    local = co.pve.storages["local"]  # as `pvesm set local --content ...,rootdir` would make it
    local["content"] = ",".join(sorted({*local["content"].split(","), "rootdir"}))
    co.edit_guest(950, storage_pool="local")


EVERYTHING = set(ALL_TASKS)

REBAKES: dict[str, tuple[Callable[[Checkout], None], set[str]]] = {
    "a feature script": (script("features/docker.sh"), {"ct902", "ct910"}),
    "an app script": (script("apps/phoenix_hypervisor_lxc_910.sh"), {"ct910"}),
    "the shared library": (script("lib/phoenix-common.sh"), EVERYTHING),
    "the OS template": (os_template, EVERYTHING),
    "features": (guest(901, features=["nvidia", "base_setup"]), {"ct901", "ct920", "ct950"}),
    "unprivileged": (every_guest(unprivileged=False), EVERYTHING),  # a clone keeps its parent's: all of them at once
    "gpu_assignment": (guest(950, gpu_assignment="0"), {"ct950"}),
    "storage_pool": (other_storage, {"ct950"}),
    "snapshot settings": (guest(902, template_snapshot_name="docker-snapshot-2"), {"ct902", "ct910"}),
    "template settings": (guest(902, convert_to_template=True, template_snapshot_name=None), {"ct902", "ct910"}),
    "base_setup settings": (guest(900, extra_packages=["jq"]), EVERYTHING),
    "vLLM settings": (deep(950, "app", lambda app: app["vllm"].update(max_model_len=16384)), {"ct950"}),
    "Portainer settings": (deep(910, "app", lambda app: app["portainer"].update(port=9444)), {"ct910"}),
    "a smaller storage_size_gb": (guest(950, storage_size_gb=96), {"ct950"}),
    "nvidia.driver_version": (hypervisor("nvidia", driver_version="580.95.05"), {"ct901", "ct920", "ct950"}),
    "timezone": (hypervisor(None, timezone="Europe/Berlin"), EVERYTHING),
}


@pytest.mark.parametrize("case", list(REBAKES))
def test_a_change_rebakes_that_layer_and_every_layer_cloned_from_it(built: Checkout, case: str):
    change, rebaked = REBAKES[case]
    change(built)
    plan = built.doit("plan")
    assert plan.rc == 0, plan.output
    said = dict(re.findall(r"^(ct\d+)\s+(\S+)", plan.output, re.M))
    assert said == {k: said[k] if k in rebaked and said[k] in ("rebuild:", "follows") else "up-to-date"
                    for k in ALL_TASKS}, plan.output
    mark = built.mark()
    result = built.doit()
    assert result.rc == 0, result.output
    assert result.outcomes() == {k: ("built" if k in rebaked else "up-to-date") for k in ALL_TASKS}
    destroyed = {int(m.group(1)) for meth, p in built.writes(mark)
                 if meth == "DELETE" and (m := re.fullmatch(rf"{NODE}/lxc/(\d+)", p))}
    assert destroyed == {int(k.removeprefix("ct")) for k in rebaked}  # destroyed and built again
    assert built.doit().outcomes() == dict.fromkeys(ALL_TASKS, "up-to-date")


UPDATES: dict[str, Callable[[Checkout], None]] = {
    "memory_mb": guest(910, memory_mb=16384),
    "cores": guest(910, cores=4),
    "swap_mb": guest(910, swap_mb=1024),
    "onboot": guest(910, onboot=False),
    "protection": guest(910, protection=True),
    "tags": guest(910, tags=["web"]),
    "description": guest(910, description="Portainer Server, renamed"),
    "name": guest(910, name="PortainerServer"),
    "network": deep(910, "network_config", lambda net: net.update(ip="10.0.0.98/24")),
    "pct_features": deep(910, "pct_features", lambda f: f.update(fuse=True)),
    "mount points": guest(910, mount_points=[{"container_path": "/var/lib/portainer", "host_path": "/fastData/portainer",
                                              "persistent": True, "read_only": True}]),
    "a larger storage_size_gb": guest(910, storage_size_gb=48),
}


ROOT_ONLY = {  # what the update sets with `pct set` over the node transport (none for the others)
    "pct_features": {"features": "nesting=1,keyctl=1,fuse=1"},
    "mount points": {"mp0": "/fastData/portainer,mp=/var/lib/portainer,ro=1"},
}


def pct_sets(co: Checkout, since: int) -> list[dict[str, str]]:
    runs = [json.loads(line) for line in (co.cache / "sim" / "runs.jsonl").read_text().splitlines()]
    return [r["options"] for r in runs[since:] if r.get("op") == "pct_set"]


def node_mark(co: Checkout) -> int:
    return len((co.cache / "sim" / "runs.jsonl").read_text().splitlines())


@pytest.mark.parametrize("case", list(UPDATES))
def test_a_change_updates_that_guest_only_in_place(built: Checkout, case: str):
    UPDATES[case](built)
    plan = built.doit("plan")
    assert re.search(r"^ct910\s+update: ", plan.output, re.M), plan.output
    assert all(re.search(rf"^{k}\s+up-to-date", plan.output, re.M) for k in ALL_TASKS if k != "ct910"), plan.output
    mark, node = built.mark(), node_mark(built)
    result = built.doit()
    assert result.rc == 0, result.output
    assert result.outcomes() == {**dict.fromkeys(ALL_TASKS, "up-to-date"), "ct910": "updated"}
    assert pct_sets(built, node) == ([ROOT_ONLY[case]] if case in ROOT_ONLY else [])
    writes = built.writes(mark)
    assert writes.count(("PUT", f"{NODE}/lxc/910/config")) == 1, writes  # one config PUT
    allowed = {("PUT", f"{NODE}/lxc/910/config"), ("PUT", f"{NODE}/lxc/910/resize"),
               ("POST", f"{NODE}/lxc/910/status/reboot")}  # the resize of a larger disk; a restart if Proxmox needs one
    assert set(writes) <= allowed, writes
    assert built.doit().outcomes() == dict.fromkeys(ALL_TASKS, "up-to-date")
