"""Parallel benchmark: a cold build of the example estate on the simulator with task durations, -n 1 and -n 4.

The simulator (fakepve, served in its own process as a real host is) is given PVE-second durations for
its container tasks (create, clone, snapshot, resize, start, shutdown, stop: `--task-seconds` of
`python -m phoenix.sim`). time_scale turns PVE seconds into real ones, and Phoenix polls tasks on the
same clock. Feature scripts take no time on the simulator. Each build starts from an empty simulated host.

The critical path (the longest root-to-leaf chain of the clone graph) is computed twice: from the
durations (what the layers must wait for on the host), and from the per-layer times each run measured
(.cache/last-run.json tasks[*].seconds, summed along each chain).

    python bench/parallel.py [--time-scale 0.1] [--repeat 3] [--in-process]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
from pathlib import Path
from typing import Any

from common import median, phoenix_run, scratch, served_sim, write_config_dir

from phoenix.doitx import current

CT_SECS = {"create": 20, "clone": 10, "snapshot": 2, "resize": 2, "template": 5, "destroy": 5}
CT_START_SECS, CT_SHUTDOWN_SECS, CT_STOP_SECS = 5, 3, 1
TASK_SECS = {**CT_SECS, "start": CT_START_SECS, "shutdown": CT_SHUTDOWN_SECS, "stop": CT_STOP_SECS}


def layer_pve_seconds(estate: Any, ctid: int) -> tuple[float, list[str]]:
    """PVE seconds the host spends on one layer's cold bake, following Builder.bake's steps."""
    g = estate.guests[ctid]
    parent = g.clone_from_ctid
    steps = [("create", CT_SECS["create"])] if parent is None else [("clone", CT_SECS["clone"])]
    if parent is not None and g.storage_size_gb > estate.guests[parent].storage_size_gb:
        steps.append(("resize", CT_SECS["resize"]))
    steps.append(("start", CT_START_SECS))
    if (g.is_template_layer and estate.hypervisor.behavior.stop_templates_after_build) or g.convert_to_template:
        steps.append(("shutdown", CT_SHUTDOWN_SECS))
    if g.template_snapshot_name:
        steps.append(("snapshot", CT_SECS["snapshot"]))
    if g.convert_to_template:
        steps.append(("template", CT_SECS["template"]))
    return sum(s for _, s in steps), [f"{name} {s}" for name, s in steps]


def chains(parents: dict[int, int | None]) -> list[list[int]]:
    """Every root-to-leaf chain of the clone graph."""
    children: dict[int | None, list[int]] = {}
    for ctid, parent in parents.items():
        children.setdefault(parent, []).append(ctid)
    out = []

    def walk(ctid: int, path: list[int]) -> None:
        path = [*path, ctid]
        if ctid not in children:
            out.append(path)
        for child in sorted(children.get(ctid, [])):
            walk(child, path)

    for root in sorted(children.get(None, [])):
        walk(root, [])
    return out


def critical_path(parents: dict[int, int | None], seconds: dict[int, float]) -> tuple[float, list[int]]:
    best = max(chains(parents), key=lambda chain: sum(seconds.get(c, 0.0) for c in chain))
    return sum(seconds.get(c, 0.0) for c in best), best


def cold_build(jobs: int, time_scale: float, index: int, in_process: bool) -> dict[str, Any]:
    work = scratch(f"parallel-n{jobs}-{index}")
    config_dir = write_config_dir(work / "etc")
    sim = {"time_scale": time_scale, "ct_secs": TASK_SECS}
    cache = work / "cache"
    server = contextlib.nullcontext() if in_process else served_sim(cache, time_scale, TASK_SECS)
    with server:
        r = phoenix_run(config_dir, cache, jobs, sim, work / "build.log", prestart=in_process)
        r["layer_seconds"] = {int(task[2:]): t["seconds"] for task, t in r["last_run"]["tasks"].items()}
        r["failed"] = sorted(task for task, t in r["last_run"]["tasks"].items() if t["outcome"] == "failed")
        r["errors"] = sorted(set(re.findall(r"^phoenix\.\S+Error: (.*)$", r["doit_output"], re.M)))
        r["work"] = work
        if r["rc"] != 0:
            # How long it takes to converge by running doit again, as a user would (at most 3 more runs).
            r["reruns"] = []
            for i in range(3):
                again = phoenix_run(config_dir, cache, jobs, sim, work / f"rerun{i}.log", prestart=in_process)
                r["reruns"].append(again)
                if again["rc"] == 0:
                    break
    return r


def fmt_chain(chain: list[int]) -> str:
    return "->".join(map(str, chain))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.1, help="real seconds per PVE second (default 0.1)")
    parser.add_argument("--repeat", type=int, default=3, help="cold builds per -n value (median)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the simulator in this process (as `doit` does) instead of its own process")
    args = parser.parse_args()
    scale = args.time_scale
    print(f"phoenix parallel benchmark, {datetime.date.today()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, time_scale {scale}, median of {args.repeat}")
    print(f"  PVE seconds: {', '.join(f'{k} {v}' for k, v in CT_SECS.items())}, start {CT_START_SECS}, "
          f"shutdown {CT_SHUTDOWN_SECS}, stop {CT_STOP_SECS}; scripts 0 (simulated)")

    results: dict[int, list[dict[str, Any]]] = {1: [], 4: []}
    for jobs in results:
        for i in range(args.repeat):
            results[jobs].append(cold_build(jobs, scale, i, args.in_process))
    estate = current.current().estate
    parents = {ctid: g.clone_from_ctid for ctid, g in estate.guests.items()}

    print("\ntheoretical per-layer host time (PVE s):")
    theory = {}
    for ctid in parents:
        secs, steps = layer_pve_seconds(estate, ctid)
        theory[ctid] = secs * scale
        print(f"  ct{ctid}: {secs:>5.1f}  ({' + '.join(steps)})")
    cp_theory, cp_theory_chain = critical_path(parents, theory)
    serial_theory = sum(theory.values())
    print(f"  critical path {fmt_chain(cp_theory_chain)}: {cp_theory / scale:.1f} PVE s = {cp_theory:.3f} s; "
          f"all layers in series: {serial_theory:.3f} s")

    where = "in this process, started before the timing" if args.in_process else "in its own process"
    print(f"\nruns (wall = setup + doit run; the simulator runs {where}):")
    for jobs, runs in results.items():
        for i, r in enumerate(runs):
            if r["rc"] == 0:
                cp, chain = critical_path(parents, r["layer_seconds"])
                state = f"measured CP {fmt_chain(chain)} {cp:.3f} s, ok"
            else:
                state = f"FAILED rc {r['rc']} ({', '.join(r['failed'])}: {'; '.join(r['errors'])})"
            line = f"  -n {jobs} #{i + 1}: wall {r['seconds']:.3f} s, {r['requests']} API requests, {state}"
            if r.get("reruns"):
                total = r["seconds"] + sum(x["seconds"] for x in r["reruns"])
                line += f"; converged after {len(r['reruns'])} more run(s), {total:.3f} s in all" \
                    if r["reruns"][-1]["rc"] == 0 else "; did not converge in 3 more runs"
            print(line)

    def summary(jobs: int) -> dict[str, Any]:
        runs = results[jobs]
        ok = [r for r in runs if r["rc"] == 0]
        layer = {c: median([r["layer_seconds"][c] for r in ok]) for c in parents} if ok else {}
        return {"ok": len(ok), "runs": len(runs), "wall": median([r["seconds"] for r in ok]) if ok else None,
                "cp": critical_path(parents, layer)[0] if ok else None,
                "serial": sum(layer.values()) if ok else None}

    s1, s4 = summary(1), summary(4)
    print("\nsummary (medians of the successful runs):")
    for jobs, s in ((1, s1), (4, s4)):
        if s["wall"] is None:
            print(f"  -n {jobs}: no successful cold build in {s['runs']} runs")
            continue
        print(f"  -n {jobs}: {s['ok']}/{s['runs']} cold builds succeeded; wall {s['wall']:.3f} s; measured CP "
              f"{s['cp']:.3f} s; sum of layer times {s['serial']:.3f} s")
    print(f"  theoretical CP {cp_theory:.3f} s; theoretical -n 1 (all layers in series) {serial_theory:.3f} s")
    if s1["wall"] is not None:
        print(f"  -n 1 wall / theoretical serial: {s1['wall'] / serial_theory:.2f}")
    if s4["wall"] is not None:
        r_measured, r_theory = s4["wall"] / s4["cp"], s4["wall"] / cp_theory
        print(f"  -n 4 wall / measured CP: {r_measured:.2f}; -n 4 wall / theoretical CP: {r_theory:.2f}")
        if s1["wall"] is not None:
            print(f"  speedup -n 1 / -n 4: {s1['wall'] / s4['wall']:.2f} (ideal: {serial_theory / cp_theory:.2f})")
        print(f"target: -n 4 wall <= 1.2 x critical path: {'MET' if r_theory <= 1.2 else 'MISSED'} "
              f"({r_theory:.2f} x the theoretical CP; {r_measured:.2f} x the measured one)")
    else:
        print("target: -n 4 wall <= 1.2 x critical path: MISSED, the -n 4 cold build does not complete")
        print("  speedup -n 1 / -n 4: n/a")
    print(f"\nscratch dirs (logs, last-run.json): {Path(results[4][0]['work']).parent}/phoenix-bench-parallel-*")


if __name__ == "__main__":
    main()
