"""No-op benchmark: a second `doit` on an estate that is already built, at 6, 50 and 200 guests.

For each size: generate the estate (the example estate of etc/ plus app containers cloned from 902 and 920),
build it once on the simulator (time_scale 0, served in its own process as a real host is), then time
no-op runs and count their API requests. Each Phoenix no-op is followed by a bare doit no-op with the
same number of tasks and the same task_dep shape (uptodate [True], a trivial action); the figure is the
median of the per-pair ratios. Measured two ways: doit run in this process (a run's own work, without
Python's start-up and imports), and `doit` as a command (what a user waits for, imports included).
Everything is on loopback.

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

from bare import bare_config, bare_tasks
from common import ROOT, median, phoenix_run, run_doit, scratch, served_sim, write_config_dir

import phoenix.doitx.tasks as phoenix_tasks


class Bare:
    """The bare doit: built once, then timed no-op runs."""

    def __init__(self, work: Path, shape: dict[int, int | None], jobs: int):
        self.config, self.gen, self.jobs = bare_config(work / "bare.db", shape), bare_tasks(shape), jobs
        self.out, self.tasks = work / "bare.txt", len(shape)
        if run_doit(self.config, self.gen, jobs, self.out) != 0:  # first run: executes every task once
            raise SystemExit(f"bare doit first run failed:\n{self.out.read_text()}")

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
task_layers = bare_tasks(SHAPE)
"""


def cli_pairs(work: Path, config_dir: Path, cache: Path, shape: dict[int, int | None], jobs: int,
              repeat: int) -> tuple[list[float], list[float]]:
    """`doit` as a user runs it, in a new process each time, with the same bare dodo as a command.

    Bytecode is cached as on a user's machine (under the scratch dir, so the repository stays clean),
    whatever PYTHONDONTWRITEBYTECODE says here; one untimed run of each first writes it.
    """
    bare_dodo = work / "bare_dodo.py"
    bare_dodo.write_text(BARE_DODO.format(bench=str(Path(__file__).resolve().parent), dep=str(work / "bare-cli.db"),
                                          shape=json.dumps(shape)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",) and not k.startswith("PHOENIX_")}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    phoenix_cmd = ([sys.executable, "-m", "doit", "-n", str(jobs)], ROOT,
                   {**env, "PHOENIX_CONFIG_DIR": str(config_dir), "PHOENIX_CACHE_DIR": str(cache)})
    bare_cmd = ([sys.executable, "-m", "doit", "-f", str(bare_dodo), "-n", str(jobs)], work, env)

    def timed(cmd: tuple[list[str], Path, dict[str, str]], expect: str) -> float:
        t0 = time.perf_counter()
        done = subprocess.run(cmd[0], cwd=cmd[1], env=cmd[2], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode != 0 or expect not in done.stdout or done.stdout.count("-- ") != len(shape):
            raise SystemExit(f"the no-op command {cmd[0]} did not skip every task:\n{done.stdout}{done.stderr}")
        return seconds

    timed(bare_cmd, "")  # the bare doit's first run executes its tasks once
    timed(phoenix_cmd, "nothing to do")
    timed(bare_cmd, "")
    phoenix, bare = [], []
    for _ in range(repeat):
        phoenix.append(timed(phoenix_cmd, "nothing to do"))
        bare.append(timed(bare_cmd, ""))
    return phoenix, bare


def measure(work: Path, guests: int, jobs: int, repeat: int, in_process: bool) -> dict[str, Any]:
    """Build once, then alternate Phoenix and bare no-op runs, so a machine that speeds up or slows down
    during the benchmark affects both sides of each pair alike."""
    cache = work / "cache"
    with contextlib.nullcontext() if in_process else served_sim(cache):
        config_dir = write_config_dir(work / "etc", guests)
        sim = {"time_scale": 0}
        t0 = time.perf_counter()
        first = phoenix_run(config_dir, cache, jobs, sim, work / "build.log")
        build_s = time.perf_counter() - t0
        outcomes = {t["outcome"] for t in first["last_run"]["tasks"].values()}
        if first["rc"] != 0 or outcomes != {"built"} or len(first["last_run"]["tasks"]) != guests:
            raise SystemExit(f"the first build of {guests} guests failed (rc {first['rc']}):\n{first['doit_output'][-3000:]}")
        shape = {ctid: layer.parent for ctid, layer in phoenix_tasks.current().layers.items()}
        bare = Bare(work, shape, jobs)
        phoenix_run(config_dir, cache, jobs, sim, work / "warmup.log", prestart=in_process)  # one untimed no-op each
        bare.noop()
        runs, bare_times = [], []
        for i in range(repeat):
            gc.collect()  # each timed run starts with no garbage left by the one before
            r = phoenix_run(config_dir, cache, jobs, sim, work / f"noop{i}.log", prestart=in_process)
            tasks = r["last_run"]["tasks"]
            if r["rc"] != 0 or len(tasks) != guests or any(t["outcome"] != "up-to-date" for t in tasks.values()):
                raise SystemExit(f"the no-op run of {guests} guests was not a no-op:\n{r['doit_output'][-3000:]}")
            runs.append(r)
            bare_times.append(bare.noop())
        cli, cli_bare = cli_pairs(work, config_dir, cache, shape, jobs, repeat) if not in_process else ([], [])
    seconds = [r["seconds"] for r in runs]
    return {"build_s": build_s, "build_requests": first["requests"], "seconds": median(seconds), "all_seconds": seconds,
            "setup_s": median([r["setup_s"] for r in runs]), "sim_start_s": median([r["sim_start_s"] for r in runs]),
            "requests": sorted({r["requests"] for r in runs}), "bare_s": median(bare_times), "bare_all": bare_times,
            "ratio": median([p / b for p, b in zip(seconds, bare_times, strict=True)]),
            "api_s": median([r["last_run"]["api_seconds"] for r in runs]),
            "own_ratio": median([(p - r["last_run"]["api_seconds"]) / b
                                 for p, r, b in zip(seconds, runs, bare_times, strict=True)]),
            "cli": cli, "cli_bare": cli_bare,
            "cli_ratio": median([p / b for p, b in zip(cli, cli_bare, strict=True)]) if cli else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="6,50,200", help="estate sizes (guests), comma-separated")
    parser.add_argument("--repeat", type=int, default=15, help="timed no-op pairs per size (median)")
    parser.add_argument("--jobs", type=int, default=4, help="doit -n")
    parser.add_argument("--in-process", action="store_true",
                        help="run the simulator in this process (as `doit` does) instead of its own process")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(scratch(f"noop{args.one}"), args.one, args.jobs, args.repeat, args.in_process)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"phoenix no-op benchmark, {datetime.date.today()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, doit -n {args.jobs}, median of {args.repeat}; "
          "each size in a fresh process")
    rows = []
    for guests in sizes:
        # A fresh process per size: a run does not inherit the state of the sizes measured before it.
        cmd = [sys.executable, __file__, "--one", str(guests), "--repeat", str(args.repeat), "--jobs", str(args.jobs),
               *(["--in-process"] if args.in_process else [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"measuring {guests} guests failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        p = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append((guests, p))
        print(f"  {guests} guests: first build {p['build_s']:.2f}s ({p['build_requests']} requests); no-op runs "
              f"{', '.join(f'{s:.3f}' for s in p['all_seconds'])}s (setup {p['setup_s']:.3f}s, simulator start "
              f"{p['sim_start_s']:.3f}s not counted); bare, each right after: {', '.join(f'{s:.3f}' for s in p['bare_all'])}s")
    print()
    print(f"{'guests':>6}  {'requests':>8}  {'phoenix no-op s':>15}  {'of which API s':>14}  {'bare doit no-op s':>17}  "
          f"{'ratio':>5}  {'ratio without API wait':>22}")
    for guests, p in rows:
        requests = "/".join(map(str, p["requests"]))
        print(f"{guests:>6}  {requests:>8}  {p['seconds']:>15.3f}  {p['api_s']:>14.3f}  {p['bare_s']:>17.3f}  "
              f"{p['ratio']:>5.2f}  {p['own_ratio']:>22.2f}")
    print("(ratio: the median of the ratios of each Phoenix run to the bare run right after it; API s: the time the run")
    print(" waited for the simulator's responses, TLS connection included, from last-run.json api_seconds)")
    if not args.in_process:
        print()
        print("`doit` as a command (a new process: Python start-up, imports, the run):")
        print(f"{'guests':>6}  {'phoenix doit s':>14}  {'bare doit s':>11}  {'ratio':>5}  runs (phoenix / bare)")
        for guests, p in rows:
            print(f"{guests:>6}  {median(p['cli']):>14.3f}  {median(p['cli_bare']):>11.3f}  {p['cli_ratio']:>5.2f}  "
                  f"{' '.join(f'{s:.2f}' for s in p['cli'])} / {' '.join(f'{s:.2f}' for s in p['cli_bare'])}")
    print()
    counts = {r for _, p in rows for r in p["requests"]}
    worst = max(p["ratio"] for _, p in rows)
    worst_cli = max((p["cli_ratio"] for _, p in rows if p["cli_ratio"] is not None), default=None)
    print(f"target: requests do not grow with guests (expect 1): {'MET' if counts == {1} else 'MISSED'} "
          f"(counts {sorted(counts)})")
    print(f"target: phoenix no-op within 2x of bare doit, doit in-process: {'MET' if worst <= 2 else 'MISSED'} "
          f"(worst ratio {worst:.2f})")
    if worst_cli is not None:
        print(f"target: phoenix no-op within 2x of bare doit, `doit` as a command: {'MET' if worst_cli <= 2 else 'MISSED'} "
              f"(worst ratio {worst_cli:.2f})")


if __name__ == "__main__":
    main()
