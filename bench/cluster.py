"""Cluster benchmark: 300 guests (containers and VMs) on a simulated three-node cluster (pve1, pve2, pve3).

Three figures, each from an empty simulated cluster (the simulator in this process, as plain `doit` runs it):

1. The no-op. The estate is etc/cluster/'s (920 pinned to pve1, 950 to pve2, 902 and 910 on the shared `ceph`)
   plus app containers that alternate between clones of 902 (on ceph, cloned across with `target`) and of 920
   (local: cloned from 920's copy on the member they are placed on), and VMs cloned from the golden image (bench/
   common.py's vm_configs). It is built once; then `--repeat` rounds of a Phoenix no-op and a bare doit no-op of
   the same task count and shape (bench/bare.py, "ran"). The same estate on one node gives the one-node ratio.
2. A cold build with `-n 6` and with `-n 1`, with PVE-second task durations (time_scale turns them into real
   ones), against the host's serial work (the sum of the runs' task times) divided by 6 and against the critical
   path (the longest chain of per-layer times, from .cache/last-run.json).
3. Bake once and restore against bake per node: the cluster example as it is (920 baked on pve1, copied to pve2
   by vzdump and restore, 950 cloned from the copy), and with a second chain 1900 -> 1901 -> 1920 baked on pve2
   for 950 (what a tool without copies does). Feature scripts take no time on the simulator: what a per-node bake
   also repeats on a real host (vllm.sh's downloads and install, minutes to tens of minutes) is not in the figure,
   so the figure is the host-task side only.

    python bench/cluster.py [--guests 300] [--vms 50] [--repeat 5] [--time-scale 0.005]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import shutil
import time
from pathlib import Path
from typing import Any

from bare import bare_config, bare_tasks
from common import ROOT, median, phoenix_run, run_doit, scratch, vm_configs

TASK_SECS = {"create": 20, "clone": 10, "snapshot": 2, "resize": 2, "template": 5, "destroy": 5, "vzdump": 30,
             "start": 5, "shutdown": 3, "stop": 1}


def cluster_lxc(guests: int, vms: int) -> dict[str, Any]:
    base = json.loads((ROOT / "etc" / "cluster" / "phoenix_lxc_configs.json").read_text())
    cts = base["lxc_configs"]
    models = [cts["910"], cts["950"]]
    extra = guests - vms - len(cts)
    for i in range(extra):
        ctid = 1000 + i
        g = copy.deepcopy(models[i % 2])
        g.pop("node", None)
        g.pop("docker_stacks", None)
        g["memory_mb"], g["mount_points"] = 2048, []
        g["name"] = f"app-{'portainer' if i % 2 == 0 else 'vllm'}-{ctid}"
        g["description"] = f"bench app container {i + 1} of {extra}"
        g["network_config"] = {**g["network_config"], "ip": f"10.0.{1 + i // 200}.{10 + i % 200}/16", "gw": "10.0.0.1"}
        g["mac_address"] = f"52:54:00:ab:{ctid >> 8 & 0xFF:02x}:{ctid & 0xFF:02x}"
        cts[str(ctid)] = g
    return base


def config_dir(target: Path, lxc: dict[str, Any], vms: int, cluster: bool) -> Path:
    shutil.copytree(ROOT / "etc", target, ignore=shutil.ignore_patterns("cluster"))
    hyp = json.loads((ROOT / "etc" / "cluster" / "phoenix_hypervisor_config.json").read_text())
    if not cluster:  # the same estate on one node: no members, no pins, the shared storage is local-lvm
        hyp["proxmox"].pop("nodes")
        hyp["nvidia"]["gpus"] = [0, 1]
        text = json.dumps(lxc).replace('"ceph"', '"local-lvm"')
        lxc = json.loads(text)
        for g in lxc["lxc_configs"].values():
            g.pop("node", None)
    (target / "phoenix_hypervisor_config.json").write_text(json.dumps(hyp, indent=2))
    (target / "phoenix_lxc_configs.json").write_text(json.dumps(lxc, indent=2))
    if vms:
        (target / "phoenix_vm_configs.json").write_text(json.dumps(vm_configs(vms), indent=2))
    else:
        (target / "phoenix_vm_configs.json").unlink(missing_ok=True)
    (target / "phoenix_stacks_config.json").unlink(missing_ok=True)
    return target


def build(work: Path, name: str, lxc: dict[str, Any], vms: int, cluster: bool, jobs: int,
          sim: dict[str, Any]) -> tuple[Path, Path, dict[str, Any]]:
    conf, cache = config_dir(work / name / "etc", lxc, vms, cluster), work / name / ".cache"
    result = phoenix_run(conf, cache, jobs, sim, work / f"{name}.log")
    if result["rc"] != 0:
        raise SystemExit(f"{name}: the build failed:\n{result['doit_output'][-3000:]}")
    return conf, cache, result


def shape_of(conf: Path) -> dict[int, int | None]:
    lxc = json.loads((conf / "phoenix_lxc_configs.json").read_text())["lxc_configs"]
    out: dict[int, int | None] = {int(k): v.get("clone_from_ctid") for k, v in lxc.items()}
    if (conf / "phoenix_vm_configs.json").exists():
        for vm in json.loads((conf / "phoenix_vm_configs.json").read_text())["virtual_machines"]:
            out[vm["vm_id"]] = vm.get("clone_from_vmid")
    return out


def noop(work: Path, args: argparse.Namespace, cluster: bool) -> dict[str, Any]:
    name = "noop-cluster" if cluster else "noop-one-node"
    conf, cache, _ = build(work, name, cluster_lxc(args.guests, args.vms), args.vms, cluster, 6, {})
    shape = shape_of(conf)
    bare_cfg, bare_gen = bare_config(work / f"{name}-bare.db", shape), bare_tasks(shape, "ran")
    run_doit(bare_cfg, bare_gen, 4, work / f"{name}-bare.txt")
    ratios, requests, seconds = [], [], []
    for _ in range(args.repeat):
        gc.collect()
        result = phoenix_run(conf, cache, 4, {}, work / f"{name}-noop.log")
        gc.collect()
        t0 = time.perf_counter()
        run_doit(bare_cfg, bare_gen, 4, work / f"{name}-bare.txt")
        bare_s = time.perf_counter() - t0
        requests.append(result["requests"])
        seconds.append(result["seconds"])
        ratios.append(result["seconds"] / bare_s)
    return {"guests": len(shape), "requests": max(requests), "seconds": median(seconds), "ratio": median(ratios)}


def cold(work: Path, args: argparse.Namespace, jobs: int) -> dict[str, Any]:
    sim = {"time_scale": args.time_scale, "ct_secs": TASK_SECS}
    conf, _, result = build(work, f"cold-n{jobs}", cluster_lxc(args.guests, args.vms), args.vms, True, jobs, sim)
    tasks = {k: float(t.get("seconds") or 0) for k, t in result["last_run"]["tasks"].items()}
    parents = shape_of(conf)

    def key(v: int) -> str:
        return f"vm{v}" if f"vm{v}" in tasks else f"ct{v}"

    memo: dict[int, float] = {}

    def path(v: int) -> float:
        if v not in memo:
            p = parents.get(v)
            memo[v] = tasks.get(key(v), 0.0) + (path(p) if p is not None and p in parents else 0.0)
        return memo[v]

    return {"seconds": result["doit_s"], "serial": sum(tasks.values()), "critical": max(map(path, parents)),
            "requests": result["requests"]}


def copies(work: Path, args: argparse.Namespace, per_node: bool) -> dict[str, Any]:
    lxc = json.loads((ROOT / "etc" / "cluster" / "phoenix_lxc_configs.json").read_text())
    cts = lxc["lxc_configs"]
    if per_node:  # a second chain for pve2: 1900 -> 1901 -> 1920, and 950 cloned from 1920
        for src, new, parent in ((900, 1900, None), (901, 1901, 1900), (920, 1920, 1901)):
            g = copy.deepcopy(cts[str(src)])
            g["name"], g["node"] = f"{g['name']}-pve2", "pve2"
            g["network_config"] = {**g["network_config"], "ip": f"10.0.0.{new - 1900 + 60}/24"}
            g["mac_address"] = f"52:54:00:67:99:{new - 1900:02x}"
            if parent is not None:
                g["clone_from_ctid"] = parent
            cts[str(new)] = g
        cts["950"]["clone_from_ctid"] = 1920
    sim = {"time_scale": args.time_scale * 20, "ct_secs": TASK_SECS}
    name = "per-node" if per_node else "copy"
    _, _, result = build(work, name, lxc, 0, True, 4, sim)
    tasks = {k: float(t.get("seconds") or 0) for k, t in result["last_run"]["tasks"].items()}
    return {"seconds": result["doit_s"], "requests": result["requests"], "tasks": tasks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guests", type=int, default=300)
    ap.add_argument("--vms", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--time-scale", type=float, default=0.005)
    args = ap.parse_args()
    work = scratch("cluster")
    print(f"scratch: {work}")
    one, three = noop(work, args, False), noop(work, args, True)
    print(f"no-op, {three['guests']} guests ({args.vms} VMs): 3 nodes {three['requests']} request(s), "
          f"{three['seconds']:.2f} s, {three['ratio']:.2f}x bare doit; one node {one['requests']} request(s), "
          f"{one['seconds']:.2f} s, {one['ratio']:.2f}x bare doit")
    n1, n6 = cold(work, args, 1), cold(work, args, 6)
    print(f"cold build (time_scale {args.time_scale}): -n 1 {n1['seconds']:.1f} s, -n 6 {n6['seconds']:.1f} s "
          f"(speed-up {n1['seconds'] / n6['seconds']:.2f}x); serial task time / 6 = {n6['serial'] / 6:.1f} s, "
          f"critical path {n6['critical']:.1f} s; -n 6 is {n6['seconds'] / max(n6['serial'] / 6, n6['critical']):.2f}x "
          "the larger of the two")
    once, per = copies(work, args, False), copies(work, args, True)
    copy_s = sum(v for k, v in once["tasks"].items() if k == "ct920") - per["tasks"].get("ct920", 0.0)
    print(f"920 for 950 on pve2: bake once and restore {once['seconds']:.1f} s, {once['requests']} requests (920's "
          f"copy adds {copy_s:.1f} s to its task); bake per node {per['seconds']:.1f} s, {per['requests']} requests "
          f"(the chain 1900/1901/1920 takes {sum(per['tasks'].get(f'ct{v}', 0.0) for v in (1900, 1901, 1920)):.1f} s "
          "of task time); feature scripts not modelled")


if __name__ == "__main__":
    main()
