"""Scale benchmark: a cold build of 200 and 1000 guests on the simulator, and what saving its state costs.

For each size, in a fresh process: generate the estate (the example estate of etc/ plus app containers cloned
from 902 and 920, as bench/noop.py does), then build it on an empty simulated host (time_scale 0, `doit -n 4`).
The simulator runs in the benchmark's process (as plain `doit` runs it), started before the timing, or with
--served in its own process (`python -m phoenix.sim`, which says what saving cost when it stops). Measured:
the seconds spent persisting its state and the bytes written to the state dir, from the simulator's start to
its stop (the compaction at stop included). The target is a cold build whose cost grows linearly with the
estate: the 1000/200 ratios close to 5.

    python bench/scale.py [--sizes 200,1000] [--jobs 4] [--served]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT, phoenix_run, scratch, served_sim, write_config_dir

from phoenix.sim import host as sim_host


class Persistence:
    """Seconds and bytes the simulator spends saving its state.

    A simulator that keeps these figures itself (`SimHost.stats`) is read; one that does not (a checkout before
    the journal, which rewrote state.json on each save) is measured by timing its `save` and adding up the size
    of the state.json each save wrote."""

    def __init__(self) -> None:
        self.seconds, self.cpu_seconds, self.bytes, self.saves = 0.0, 0.0, 0, 0
        self.own = hasattr(sim_host.SimHost, "stats")
        if not self.own:
            save = sim_host.SimHost.save

            @functools.wraps(save)
            def timed(host: Any) -> None:
                t0, c0 = time.perf_counter(), time.thread_time()
                save(host)
                self.seconds += time.perf_counter() - t0
                self.cpu_seconds += time.thread_time() - c0
                self.saves += 1
                if host.state_file.exists():
                    self.bytes += host.state_file.stat().st_size

            sim_host.SimHost.save = timed  # type: ignore[method-assign]

    def result(self, host: Any) -> dict[str, Any]:
        if self.own:
            stats = host.stats
            return {"seconds": stats.seconds, "cpu_seconds": stats.cpu_seconds, "bytes": stats.bytes,
                    "saves": stats.writes, "compactions": stats.compactions}
        return {"seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "bytes": self.bytes, "saves": self.saves,
                "compactions": None}


SERVER_SAVED = re.compile(r"stopped; state saved \((\d+) writes, (\d+) bytes, (\d+) compactions, ([\d.]+)s saving, "
                          r"([\d.]+)s CPU\)")


def served_persistence(log: Path) -> dict[str, Any]:
    """What saving cost a served simulator, as it said when it stopped."""
    found = SERVER_SAVED.findall(log.read_text())
    if not found:
        raise SystemExit(f"the served simulator did not say what saving cost (a checkout before it did?): see {log}")
    writes, size, compactions, seconds, cpu = found[-1]
    return {"seconds": float(seconds), "cpu_seconds": float(cpu), "bytes": int(size), "saves": int(writes),
            "compactions": int(compactions)}


def measure(work: Path, guests: int, jobs: int, served: bool) -> dict[str, Any]:
    persistence = None if served else Persistence()
    cache = work / "cache"
    config_dir = write_config_dir(work / "etc", guests)
    with served_sim(cache) if served else contextlib.nullcontext():
        r = phoenix_run(config_dir, cache, jobs, {"time_scale": 0}, work / "build.log", prestart=not served)
    tasks = r["last_run"]["tasks"]
    if r["rc"] != 0 or len(tasks) != guests or {t["outcome"] for t in tasks.values()} != {"built"}:
        raise SystemExit(f"the cold build of {guests} guests failed (rc {r['rc']}):\n{r['doit_output'][-3000:]}")
    state = cache / "sim" / "state.json"
    persist = persistence.result(sim_host.shared(cache / "sim")) if persistence else served_persistence(work / "sim-server.log")
    return {"seconds": r["seconds"], "requests": r["requests"], "sim_start_s": r["sim_start_s"],
            "persist": persist, "state_bytes": state.stat().st_size, "work": str(work)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,1000", help="estate sizes (guests), comma-separated")
    parser.add_argument("--jobs", type=int, default=4, help="doit -n")
    parser.add_argument("--served", action="store_true", help="serve the simulator in its own process")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(scratch(f"scale{args.one}"), args.one, args.jobs, args.served)))
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"phoenix cold-build scale benchmark, {datetime.date.today()}, commit {commit or '?'}, "
          f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, doit -n {args.jobs}, "
          f"time_scale 0, simulator {'served in its own process' if args.served else 'in-process'}; "
          "each size in a fresh process")
    rows: list[tuple[int, dict[str, Any]]] = []
    for guests in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(guests), "--jobs", str(args.jobs), *(["--served"] if args.served else [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"measuring {guests} guests failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        p = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append((guests, p))
        print(f"  {guests} guests: {p['seconds']:.2f}s, {p['requests']} requests, scratch dir {p['work']}", flush=True)
    print()
    print(f"{'guests':>6}  {'wall s':>8}  {'requests':>8}  {'persist s':>9}  {'of it CPU s':>11}  {'persist MB':>10}  "
          f"{'saves':>6}  {'compactions':>11}  {'state.json MB':>13}")
    for guests, p in rows:
        q = p["persist"]
        compactions = "-" if q["compactions"] is None else str(q["compactions"])
        print(f"{guests:>6}  {p['seconds']:>8.2f}  {p['requests']:>8}  {q['seconds']:>9.2f}  {q['cpu_seconds']:>11.2f}  "
              f"{q['bytes'] / 1e6:>10.2f}  {q['saves']:>6}  {compactions:>11}  {p['state_bytes'] / 1e6:>13.2f}")
    if len(rows) >= 2:
        (small, a), (large, b) = rows[0], rows[-1]
        print()
        print(f"ratio {large}/{small} (linear: {large / small:.1f}): wall {b['seconds'] / a['seconds']:.2f}, "
              f"persist s {b['persist']['seconds'] / max(a['persist']['seconds'], 1e-9):.2f} "
              f"(CPU {b['persist']['cpu_seconds'] / max(a['persist']['cpu_seconds'], 1e-9):.2f}), "
              f"persist bytes {b['persist']['bytes'] / max(a['persist']['bytes'], 1):.2f}, "
              f"requests {b['requests'] / a['requests']:.2f}")
    print("(wall: setup() plus the doit run, the simulator's start excluded; persist: the simulator's saving of its")
    print(" state from its start to its stop, compaction at stop included; of it CPU: the time the saving thread ran,")
    print(" the rest is waiting for the disk or for the GIL, which the in-process simulator shares with doit's threads;")
    print(" saves: writes of the state dir)")


if __name__ == "__main__":
    main()
