"""Serve the simulated host in its own process, until Ctrl-C or SIGTERM.

    python -m phoenix.sim [--state-dir .cache/sim] [--time-scale 0.01] [--task-seconds create=20,clone=10]

While it runs, Phoenix runs whose cache is the state dir's parent use it instead of starting their own
in-process simulator (it is advertised in <state-dir>/server.json). Its state is saved on every change.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from ..errors import PhoenixError
from .host import SimHost, advertise, parse_task_seconds, served


def parse_seconds(text: str) -> dict[str, float]:
    try:
        return parse_task_seconds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phoenix.sim", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--state-dir", type=Path, default=Path(".cache/sim"), help="the simulator's state (default .cache/sim)")
    add("--time-scale", type=float, default=0.0, help="real seconds per PVE second (default 0: tasks take no time)")
    add("--task-seconds", type=parse_seconds, default={}, help="PVE seconds per task, e.g. create=20,clone=10,start=5")
    args = parser.parse_args(argv)
    other = served(args.state_dir)
    if other:
        print(f"phoenix.sim: {args.state_dir} is already served by process {other[1]} at {other[0].url}")
        return 1
    try:
        host = SimHost(args.state_dir, time_scale=args.time_scale, ct_secs=args.task_seconds)
        endpoint = host.start()
    except PhoenixError as e:
        print(f"phoenix.sim: {e}")
        return 2
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    path = advertise(host, endpoint)
    print(f"phoenix.sim: simulated Proxmox host at {endpoint.url} (state in {host.dir}); Ctrl-C stops it", flush=True)
    try:
        while not done.wait(1):
            pass
    finally:
        path.unlink(missing_ok=True)
        host.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
