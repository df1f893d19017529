"""No-op benchmark: a second `doit` on an estate that is already built, at 6, 50 and 200 guests.

For each size: generate the estate (the example estate of etc/ plus app containers cloned from 902 and 920),
build it once on the simulator (time_scale 0, served in its own process as a real host is), then time
no-op runs and count their API requests. Each Phoenix no-op is followed by two bare doit no-ops with the
same number of tasks and the same task_dep shape (see bare.py): "ran", tasks that ran once and are up to
date (the baseline), and "never", tasks up to date without ever running (the cheapest no-op doit has).
The figures are the medians of the per-round ratios. Measured two ways: doit run in this process (a run's
own work, without Python's start-up and imports), and `doit` as a command (what a user waits for,
imports included). Everything is on loopback.

    python bench/noop.py [--sizes 6,50,200] [--repeat 15] [--jobs 4] [--in-process]"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bare import KINDS, bare_config, bare_tasks
from common import ROOT, median, phoenix_run, run_doit, scratch, served_sim, write_config_dir

from phoenix.doitx import current


class Bare:
    """A bare doit: run once (which executes its tasks if it is of the "ran" kind), then timed no-op runs."""

    def __init__(self, work: Path, shape: dict[int, int | None], jobs: int, kind: str):
        self.config, self.gen = bare_config(work / f"bare-{kind}.db", shape), bare_tasks(shape, kind)
        self.jobs, self.out, self.tasks = jobs, work / f"bare-{kind}.txt", len(shape)
        if run_doit(self.config, self.gen, jobs, self.out) != 0:
            raise SystemExit(f"bare doit first run failed:\n{self.out.read_text()}")
        executed = self.out.read_text().count(".  ")
        if executed != (self.tasks if kind == "ran" else 0):
            raise SystemExit(f"the first run of the {kind!r} bare doit executed {executed} of {self.tasks} tasks")

    def noop(self) -> float:
        gc.collect()
        t0 = time.perf_counter()
        rc = run_doit(self.config, self.gen, self.jobs, self.out)
        seconds = time.perf_counter() - t0
        text = self.out.read_text()
        if rc != 0 or text.count("-- ") != self.tasks or ".  " in text:
            raise SystemExit(f"bare doit no-op did not skip every task:\n{text}")
        return seconds


BARE_DODO = """\
import json
import sys

sys.path.insert(0, {bench!r})
from bare import bare_config, bare_tasks

SHAPE = {{int(ctid): parent for ctid, parent in json.loads({shape!r}).items()}}
DOIT_CONFIG = bare_config({dep!r}, SHAPE)
task_layers = bare_tasks(SHAPE, {kind!r})
"""


def cli_rounds(work: Path, config_dir: Path, cache: Path, shape: dict[int, int | None], jobs: int,
               repeat: int) -> tuple[list[float], dict[str, list[float]]]:
    """`doit` as a user runs it, in a new process each time, with the same bare dodos as commands.

    Bytecode is cached as on a user's machine (under the scratch dir, so the repository stays clean),
    whatever PYTHONDONTWRITEBYTECODE says here; one untimed run of each first writes it.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",) and not k.startswith("PHOENIX_")}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    phoenix_cmd = ([sys.executable, "-m", "doit", "-n", str(jobs)], ROOT,
                   {**env, "PHOENIX_CONFIG_DIR": str(config_dir), "PHOENIX_CACHE_DIR": str(cache)})
    bare_cmds = {}
    for kind in KINDS:
        dodo = work / f"bare_dodo_{kind}.py"
        dodo.write_text(BARE_DODO.format(bench=str(Path(__file__).resolve().parent), dep=str(work / f"bare-cli-{kind}.db"),
                                         shape=json.dumps(shape), kind=kind))
        bare_cmds[kind] = ([sys.executable, "-m", "doit", "-f", str(dodo), "-n", str(jobs)], work, env)

    def timed(cmd: tuple[list[str], Path, dict[str, str]], expect: str, first: bool = False) -> float:
        t0 = time.perf_counter()
        done = subprocess.run(cmd[0], cwd=cmd[1], env=cmd[2], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        skipped = done.stdout.count("-- ") == len(shape)
        if done.returncode != 0 or expect not in done.stdout or not (first or skipped):
            raise SystemExit(f"the no-op command {cmd[0]} did not skip every task:\n{done.stdout}{done.stderr}")
        return seconds

    for cmd in bare_cmds.values():
        timed(cmd, "", first=True)  # the first run: a "ran" bare doit executes its tasks once
        timed(cmd, "")
    timed(phoenix_cmd, "nothing to do")
    phoenix: list[float] = []
    bare: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(repeat):
        phoenix.append(timed(phoenix_cmd, "nothing to do"))
        for kind, cmd in bare_cmds.items():
            bare[kind].append(timed(cmd, ""))
    return phoenix, bare


def ratio(phoenix: list[float], bare: list[float]) -> float:
    """The median of the per-round ratios: a round sees the machine's drift on both sides."""
    return median([p / b for p, b in zip(phoenix, bare, strict=True)])


def measure(work: Path, guests: int, jobs: int, repeat: int, in_process: bool, vms: int = 0) -> dict[str, Any]:
    """Build once, then time rounds of a Phoenix no-op and each bare no-op right after it, so a machine that
    speeds up or slows down during the benchmark affects both sides of a round alike. With vms, `guests` counts
    the containers and VMs together, and each VM's cloudinit task is a task of the bare doit too."""
    cache = work / "cache"
    with contextlib.nullcontext() if in_process else served_sim(cache):
        config_dir = write_config_dir(work / "etc", guests - vms, vms)
        sim = {"time_scale": 0}
        t0 = time.perf_counter()
        first = phoenix_run(config_dir, cache, jobs, sim, work / "build.log")
        build_s = time.perf_counter() - t0
        outcomes = {t["outcome"] for t in first["last_run"]["tasks"].values()}
        if first["rc"] != 0 or outcomes != {"built"} or len(first["last_run"]["tasks"]) != guests:
            raise SystemExit(f"the first build of {guests} guests failed (rc {first['rc']}):\n{first['doit_output'][-3000:]}")
        resources = current.current().resources
        shape = {res.vmid: (resources[res.parent].vmid if res.parent else None) for res in resources.values()}
        shape.update({10 ** 9 + res.vmid: None for res in resources.values() if res.kind == "vm"})  # cloudinit:<vmid>
        bares = {kind: Bare(work, shape, jobs, kind) for kind in KINDS}
        phoenix_run(config_dir, cache, jobs, sim, work / "warmup.log", prestart=in_process)  # one untimed no-op each
        for b in bares.values():
            b.noop()
        runs, bare_times = [], {kind: [] for kind in KINDS}
        for i in range(repeat):
            gc.collect()  # each timed run starts with no garbage left by the one before
            r = phoenix_run(config_dir, cache, jobs, sim, work / f"noop{i}.log", prestart=in_process)
            tasks = r["last_run"]["tasks"]
            if r["rc"] != 0 or len(tasks) != guests or any(t["outcome"] != "up-to-date" for t in tasks.values()):
                raise SystemExit(f"the no-op run of {guests} guests was not a no-op:\n{r['doit_output'][-3000:]}")
            runs.append(r)
            for kind, b in bares.items():
                bare_times[kind].append(b.noop())
        cli, cli_bare = cli_rounds(work, config_dir, cache, shape, jobs, repeat) if not in_process else ([], {})
    seconds = [r["seconds"] for r in runs]
    own = [s - r["last_run"]["api_seconds"] for s, r in zip(seconds, runs, strict=True)]
    return {"build_s": build_s, "build_requests": first["requests"], "seconds": median(seconds), "all_seconds": seconds,
            "setup_s": median([r["setup_s"] for r in runs]), "sim_start_s": median([r["sim_start_s"] for r in runs]),
            "requests": sorted({r["requests"] for r in runs}), "api_s": median([r["last_run"]["api_seconds"] for r in runs]),
            "bare_s": {k: median(v) for k, v in bare_times.items()}, "bare_all": bare_times,
            "ratio": {k: ratio(seconds, v) for k, v in bare_times.items()},
            "own_ratio": {k: ratio(own, v) for k, v in bare_times.items()},
            "cli": cli, "cli_bare": cli_bare, "cli_ratio": {k: ratio(cli, v) for k, v in cli_bare.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="6,50,200", help="estate sizes (guests), comma-separated")
    parser.add_argument("--repeat", type=int, default=15, help="timed no-op rounds per size (median)")
    parser.add_argument("--jobs", type=int, default=4, help="doit -n")
    parser.add_argument("--in-process", action="store_true",
                        help="run the simulator in this process (as `doit` does) instead of its own process")
    parser.add_argument("--vms", type=int, default=0, help="of each size, this many are VMs (a mixed estate)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(scratch(f"noop{args.one}"), args.one, args.jobs, args.repeat, args.in_process,
                                 args.vms)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"phoenix no-op benchmark, {datetime.date.today()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, doit -n {args.jobs}, median of {args.repeat}; "
          "each size in a fresh process")
    rows = []
    for guests in sizes:
        # A fresh process per size: a run does not inherit the state of the sizes measured before it.
        cmd = [sys.executable, __file__, "--one", str(guests), "--repeat", str(args.repeat), "--jobs", str(args.jobs),
               "--vms", str(args.vms), *(["--in-process"] if args.in_process else [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"measuring {guests} guests failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        p = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append((guests, p))
        print(f"  {guests} guests: first build {p['build_s']:.2f}s ({p['build_requests']} requests); no-op runs "
              f"{', '.join(f'{s:.3f}' for s in p['all_seconds'])}s (setup {p['setup_s']:.3f}s, simulator start "
              f"{p['sim_start_s']:.3f}s not counted)")
        for kind in KINDS:
            print(f"    bare ({kind}), right after each: {', '.join(f'{s:.3f}' for s in p['bare_all'][kind])}s")
    print()
    print("doit in-process (a run's own work):")
    print(f"{'guests':>6}  {'requests':>8}  {'phoenix s':>9}  {'API s':>6}  {'bare ran s':>10}  {'ratio':>5}  "
          f"{'without API wait':>16}  {'bare never s':>12}  {'ratio':>5}")
    for guests, p in rows:
        requests = "/".join(map(str, p["requests"]))
        print(f"{guests:>6}  {requests:>8}  {p['seconds']:>9.3f}  {p['api_s']:>6.3f}  {p['bare_s']['ran']:>10.3f}  "
              f"{p['ratio']['ran']:>5.2f}  {p['own_ratio']['ran']:>16.2f}  {p['bare_s']['never']:>12.3f}  "
              f"{p['ratio']['never']:>5.2f}")
    print("(ratio: the median of the ratios of each Phoenix run to the bare run right after it; API s: the time the run")
    print(" waited for the simulator's responses, TLS connection included, from last-run.json api_seconds;")
    print(" bare ran: tasks that ran once (run_once), the baseline; bare never: uptodate True, never run, the cheapest)")
    if not args.in_process:
        print()
        print("`doit` as a command (a new process: Python start-up, imports, the run; what a user waits for):")
        print(f"{'guests':>6}  {'phoenix s':>9}  {'bare ran s':>10}  {'ratio':>5}  {'bare never s':>12}  {'ratio':>5}")
        for guests, p in rows:
            print(f"{guests:>6}  {median(p['cli']):>9.3f}  {median(p['cli_bare']['ran']):>10.3f}  {p['cli_ratio']['ran']:>5.2f}  "
                  f"{median(p['cli_bare']['never']):>12.3f}  {p['cli_ratio']['never']:>5.2f}")
        for guests, p in rows:
            print(f"  {guests} guests, runs: phoenix {' '.join(f'{s:.2f}' for s in p['cli'])}; "
                  + "; ".join(f"bare {k} {' '.join(f'{s:.2f}' for s in v)}" for k, v in p["cli_bare"].items()))
    print()
    counts = {r for _, p in rows for r in p["requests"]}
    print(f"target: requests do not grow with guests (expect 1): {'MET' if counts == {1} else 'MISSED'} "
          f"(counts {sorted(counts)})")
    ways = [("doit in-process", "ratio")] + ([] if args.in_process else [("`doit` as a command", "cli_ratio")])
    for way, key in ways:
        for kind in KINDS:
            worst = max(p[key][kind] for _, p in rows)
            print(f"target: phoenix no-op within 2x of bare doit ({kind}), {way}: {'MET' if worst <= 2 else 'MISSED'} "
                  f"(worst ratio {worst:.2f})")


if __name__ == "__main__":
    main()
