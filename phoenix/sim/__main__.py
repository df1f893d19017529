"""Serve the simulated host in its own process, until Ctrl-C or SIGTERM; or unlock one of its guests.

    python -m phoenix.sim [--state-dir .cache/sim] [--time-scale 0.01] [--task-seconds create=20,clone=10]
                          [--nodes pve1,pve2,pve3]
    python -m phoenix.sim unlock VMID [--state-dir .cache/sim]

While it serves, Phoenix runs whose cache is the state dir's parent use it instead of starting their own
in-process simulator (it is advertised in <state-dir>/server.json). It holds the state dir's lock: a second
simulator of the same state is refused. Its state is saved as it changes. When it stops, the tasks still
running fail and release their guests' locks.

`unlock` removes a container's or a VM's lock, as `pct unlock` and `qm unlock` do on PVE (a half-made guest, lock
`create`, or a VM clone's target, lock `clone`, is removed with the disks its task made): through the server when the
state dir is served, else in the saved state.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ..errors import PhoenixError
from .dirlock import SERVED, SimBusy
from .host import SimHost, advertise, parse_task_seconds, served

STATE_DIR = Path(".cache/sim")


def parse_seconds(text: str) -> dict[str, float]:
    try:
        return parse_task_seconds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def say(text: str) -> None:
    print(f"phoenix.sim: {text}", flush=True)


def unlock_main(argv: list[str]) -> int:
    from .unlock import unlock

    parser = argparse.ArgumentParser(prog="python -m phoenix.sim unlock",
                                     description="Remove a simulated container's or VM's lock, as `pct unlock` and "
                                                 "`qm unlock` do on PVE.")
    parser.add_argument("vmid", type=int, help="the guest's id")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="the simulator's state (default .cache/sim)")
    args = parser.parse_args(argv)
    try:
        done, where = unlock(args.state_dir, args.vmid, note=say)
    except PhoenixError as e:
        say(str(e))
        return 1
    say(done.describe(where))
    return 0 if done.found else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["unlock"]:
        return unlock_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m phoenix.sim", description=__doc__.splitlines()[0],
                                     epilog="python -m phoenix.sim unlock VMID [--state-dir DIR]: remove a guest's lock")
    add = parser.add_argument
    add("--state-dir", type=Path, default=STATE_DIR, help="the simulator's state (default .cache/sim)")
    add("--time-scale", type=float, default=0.0, help="real seconds per PVE second (default 0: tasks take no time)")
    add("--task-seconds", type=parse_seconds, default={}, help="PVE seconds per task, e.g. create=20,clone=10,start=5")
    add("--nodes", type=lambda text: tuple(n.strip() for n in text.split(",") if n.strip()), default=("pve1",),
        help="the members of the simulated cluster, e.g. pve1,pve2,pve3 (default pve1; with more than one, a shared "
             "storage 'ceph' besides each node's local ones)")
    args = parser.parse_args(argv)
    other = served(args.state_dir)
    if other:
        say(f"{args.state_dir} is already served by process {other[1]} at {other[0].url}")
        return 1
    try:
        host = SimHost(args.state_dir, time_scale=args.time_scale, ct_secs=args.task_seconds, role=SERVED, note=say,
                       nodes=args.nodes)
        endpoint = host.start()
    except SimBusy as e:
        say(str(e))
        return 1
    except PhoenixError as e:
        say(str(e))
        return 2
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    path = advertise(host, endpoint)
    what = "host" if len(host.nodes) == 1 else f"cluster of {len(host.nodes)} nodes ({', '.join(host.nodes)})"
    say(f"simulated Proxmox {what} at {endpoint.url} (state in {host.dir}); Ctrl-C stops it")
    try:
        while not done.wait(1):
            pass
    finally:
        path.unlink(missing_ok=True)
        host.stop()
        st = host.stats
        say(f"stopped; state saved ({st.writes} writes, {st.bytes} bytes, {st.compactions} compactions, "
            f"{st.seconds:.3f}s saving, {st.cpu_seconds:.3f}s CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
