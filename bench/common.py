"""Shared helpers of the benchmarks: scratch estates, in-process doit runs, medians. Not a test module."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from doit.cmd_base import ModuleTaskLoader  # noqa: E402
from doit.doit_cmd import DoitMain  # noqa: E402

import phoenix.doitx.tasks as phoenix_tasks  # noqa: E402
from phoenix.doitx import current  # noqa: E402
from phoenix.errors import PhoenixError  # noqa: E402
from phoenix.sim.host import spawn  # noqa: E402


def scratch(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"phoenix-bench-{prefix}-"))


def estate_configs(guests: int) -> dict[str, Any]:
    """The example estate of etc/, plus extra app containers cloned from 902 (like 910) and 920 (like 950)."""
    base = json.loads((ROOT / "etc" / "phoenix_lxc_configs.json").read_text())
    cts = base["lxc_configs"]
    for g in cts.values():
        g.pop("docker_stacks", None)  # guests here, not stacks (bench/stacks.py measures those)
    extra = guests - len(cts)
    if extra < 0:
        raise ValueError(f"the example estate already has {len(cts)} guests")
    models = [cts["910"], cts["950"]]
    for i in range(extra):
        ctid = 1000 + i
        g = copy.deepcopy(models[i % 2])
        g.pop("docker_stacks", None)  # guests here, not stacks (bench/stacks.py measures those)
        kind = "portainer" if i % 2 == 0 else "vllm"
        g["name"] = f"app-{kind}-{ctid}"
        g["description"] = f"bench app container {i + 1} of {extra}, cloned from ct{g['clone_from_ctid']}"
        g["network_config"]["ip"] = f"10.0.{1 + i // 200}.{10 + i % 200}/16"
        g["network_config"]["gw"] = "10.0.0.1"
        g["mac_address"] = f"52:54:00:ab:{ctid >> 8 & 0xFF:02x}:{ctid & 0xFF:02x}"
        cts[str(ctid)] = g
    return base


VM_BASE = 5000  # the benchmark's VMs: clear of the app containers' CTIDs (1000 + i)


def vm_configs(vms: int) -> dict[str, Any]:
    """The example VMs of etc/ (a cloud-image template and a golden image), renumbered from VM_BASE, and app VMs
    cloned from the golden image up to `vms` VMs in all."""
    base = json.loads((ROOT / "etc" / "phoenix_vm_configs.json").read_text())
    roots = [v for v in base["virtual_machines"] if v["vm_id"] in (9000, 9001)]
    if vms < len(roots):
        raise ValueError(f"a VM estate has at least the {len(roots)} template VMs")
    apps = []
    for i in range(vms - len(roots)):
        vmid = VM_BASE + 1 + i
        apps.append({"vm_id": vmid, "vm_name": f"app-vm-{vmid}", "description": f"bench app VM {i + 1}",
                     "clone_from_vmid": 9001, "features": [],
                     "network_config": {"ip": f"10.1.{i // 200}.{10 + i % 200}/16", "gw": "10.1.0.1"}})
    base["virtual_machines"] = roots + apps
    return base


def write_config_dir(target: Path, guests: int | None = None, vms: int = 0) -> Path:
    """A config dir: a copy of etc/ (hypervisor config, 0600 secret files), with `guests` guests if given, and
    `vms` VMs (none: the example VMs are left out, so the containers' figures stay comparable). The example's host
    parts (`host`) are left out too: the figures are the guests'."""
    shutil.copytree(ROOT / "etc", target)
    hv = target / "phoenix_hypervisor_config.json"
    data = json.loads(hv.read_text())
    data.pop("host", None)
    hv.write_text(json.dumps(data, indent=2) + "\n")
    if guests is not None:
        (target / "phoenix_lxc_configs.json").write_text(json.dumps(estate_configs(guests), indent=2) + "\n")
    if vms:
        (target / "phoenix_vm_configs.json").write_text(json.dumps(vm_configs(vms), indent=2) + "\n")
    else:
        (target / "phoenix_vm_configs.json").unlink(missing_ok=True)
    return target


def run_doit(config: dict[str, Any], generator: Callable[[], Iterable[dict[str, Any]]], jobs: int, output: Path) -> int:
    """doit in-process, as the tests do; its console output goes to `output`."""
    loader = ModuleTaskLoader({"DOIT_CONFIG": config, "task_layers": generator})
    return DoitMain(loader, config_filenames=()).run(["-n", str(jobs), "-o", str(output)])


def phoenix_run(config_dir: Path, cache_dir: Path, jobs: int, sim_options: dict[str, Any],
                log: Path, prestart: bool = False) -> dict[str, Any]:
    """One Phoenix run on the embedded simulator; returns rc, timings, request count and last-run.json.

    `seconds` is setup() (config load and validation) plus the doit run. With prestart the simulator is
    started before the doit run and outside the timing (its start is `sim_start_s`): it is the simulator's
    cost, which a real host does not have.
    """
    t0 = time.perf_counter()
    config, generator = phoenix_tasks.setup(ROOT, process=False, config_dir=config_dir, images_dir=ROOT / "images",
                                            cache_dir=cache_dir, out=log.open("a"), sim_options=sim_options)
    setup_s = time.perf_counter() - t0
    run = current.current()
    sim_start_s = 0.0
    if prestart:
        t1 = time.perf_counter()
        run.endpoint  # noqa: B018 - starts the simulator (owned, so stopped and saved, by this run); sends no request
        sim_start_s = time.perf_counter() - t1
    requests_before = run.counters.total
    t2 = time.perf_counter()
    try:
        rc = run_doit(config, generator, jobs, log.with_suffix(".doit.txt"))
        doit_s = time.perf_counter() - t2
        requests = run.counters.total - requests_before
    finally:
        run.close()
        run.out.close()
    last = json.loads((cache_dir / "last-run.json").read_text())
    return {"rc": rc, "seconds": setup_s + doit_s, "setup_s": setup_s, "doit_s": doit_s, "sim_start_s": sim_start_s,
            "requests": requests, "last_run": last, "doit_output": log.with_suffix(".doit.txt").read_text()}


@contextlib.contextmanager
def served_sim(cache_dir: Path, time_scale: float = 0.0, task_seconds: dict[str, float] | None = None) -> Iterator[int]:
    """The simulator in its own process (`python -m phoenix.sim`), as a real host is: its work is not this process's.

    Phoenix runs with this cache dir use it. Yields the server's pid; stops it (and so saves its state) after.
    """
    args = ["--time-scale", str(time_scale)]
    if task_seconds:
        args += ["--task-seconds", ",".join(f"{k}={v}" for k, v in task_seconds.items())]
    log = (cache_dir.parent / "sim-server.log").open("a")
    try:
        proc = spawn(cache_dir / "sim", *args, stdout=log, stderr=subprocess.STDOUT)
    except PhoenixError as e:
        log.close()
        raise SystemExit(f"{e}; see {log.name}") from None
    try:
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def median(values: list[float]) -> float:
    return statistics.median(values)
