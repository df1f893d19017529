"""VM cold-build benchmark: the example VMs (cloud-image template 9000 -> golden image 9001 -> two app VMs) built from
an empty simulated host with task durations, -n 1 and -n 4, against the critical path.

The simulator (served in its own process) is given PVE-second durations for create, clone, snapshot, template,
start and shutdown (it gives VM tasks the containers' durations); the cloud image's download, the guest agent's
answers and the feature scripts take no time there. Only the VMs are built (the containers' file lists none), so
the critical path is the VMs' own: 9000 (download, create, template), 9001, then the app VMs' clones one after
another (Proxmox locks a clone's source) and the last one's start.

    python bench/vms.py [--time-scale 0.05] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from typing import Any

from common import median, phoenix_run, scratch, served_sim, write_config_dir

SECS = {"create": 20, "clone": 10, "snapshot": 2, "template": 5, "destroy": 5, "start": 5, "shutdown": 3, "stop": 1}
DOWNLOAD_SECS = 5  # fakepve's own, fixed duration of download-url


def layer_seconds(vm: dict[str, Any], has_features: bool) -> float:
    """PVE seconds of one VM layer's cold bake, following kinds/vm/steps.bake."""
    secs = SECS["create"] + DOWNLOAD_SECS if vm.get("cloud_image") else SECS["clone"]
    template_layer = bool(vm.get("template_snapshot_name")) or bool(vm.get("convert_to_template"))
    boots = has_features or not template_layer
    if boots:
        secs += SECS["start"]
    if boots and template_layer:
        secs += SECS["shutdown"]
    if vm.get("template_snapshot_name"):
        secs += SECS["snapshot"]
    if vm.get("convert_to_template"):
        secs += SECS["template"]
    return secs


def cold_build(jobs: int, scale: float, index: int) -> dict[str, Any]:
    work = scratch(f"vms-n{jobs}-{index}")
    config_dir = write_config_dir(work / "etc", vms=4)
    (config_dir / "phoenix_lxc_configs.json").write_text(json.dumps({"lxc_configs": {}}))
    cache = work / "cache"
    with served_sim(cache, scale, SECS):
        r = phoenix_run(config_dir, cache, jobs, {"time_scale": scale, "ct_secs": SECS}, work / "build.log")
    if r["rc"] != 0:
        raise SystemExit(f"the cold build failed:\n{r['doit_output'][-3000:]}")
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.05, help="real seconds per PVE second")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    scale = args.time_scale
    from common import vm_configs

    vms = {v["vm_id"]: v for v in vm_configs(4)["virtual_machines"]}
    defaults = vm_configs(4)["vm_defaults"]
    theory = {vmid: layer_seconds(v, bool(v.get("features", defaults.get("features")))) for vmid, v in vms.items()}
    apps = [v for v in vms if v not in (9000, 9001)]
    # Proxmox locks a clone's source while it copies: clones of the golden image go one after another, so the
    # last app VM waits for every clone before its own start (the clone turns of clones.py)
    cp = theory[9000] + theory[9001] + SECS["clone"] * len(apps) + max(theory[v] - SECS["clone"] for v in apps)
    serial = sum(theory.values())
    print(f"phoenix VM cold-build benchmark, {datetime.date.today()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, time_scale {scale}, median of {args.repeat}")
    print(f"  PVE seconds: {', '.join(f'{k} {v}' for k, v in SECS.items())}, download {DOWNLOAD_SECS} (fakepve's); "
          "agent and scripts 0 (simulated)")
    print(f"  per layer: {', '.join(f'vm{k} {v:g}' for k, v in theory.items())}; critical path {cp:g} PVE s = "
          f"{cp * scale:.3f} s; all in series {serial * scale:.3f} s")
    walls: dict[int, list[float]] = {}
    for jobs in (1, 4):
        walls[jobs] = [cold_build(jobs, scale, i)["seconds"] for i in range(args.repeat)]
        print(f"  -n {jobs}: wall {', '.join(f'{w:.3f}' for w in walls[jobs])} s")
    w1, w4 = median(walls[1]), median(walls[4])
    print(f"  -n 1 / series: {w1 / (serial * scale):.2f}; -n 4 / critical path: {w4 / (cp * scale):.2f}; "
          f"speedup {w1 / w4:.2f} (ideal {serial / cp:.2f})")
    ratio = w4 / (cp * scale)
    print(f"target: -n 4 wall <= 1.2 x critical path: {'MET' if ratio <= 1.2 else 'MISSED'} ({ratio:.2f})")


if __name__ == "__main__":
    main()
