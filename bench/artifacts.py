"""Artifact benchmark: a cold build of the example estate from an empty simulated host, without and with the store.

Without: every layer baked. Then `doit export` of the four template layers (900, 901, 902, 920) from that host into
an artifact store. With: a second empty host, PHOENIX_ARTIFACTS set: the four template layers restored, the two app
layers (910, 950) baked. Both at -n 1, on the embedded simulator with task durations (PVE seconds, time_scale real
seconds per PVE second).

The simulator's feature scripts take no time on their own; this benchmark gives them durations (slept in the simulated
node, scaled like the tasks), since a bake's cost on a real host is its scripts: base_setup 120, nvidia 600, docker 90,
vllm 900, the app scripts 30 and 60. A restore's cost is the archive's copy to the node (SFTP; slept here for an
archive size at 1 Gbit/s, about 110 MB/s) and the restore task (fakepve times it as a create, 20), then snapshot.

With --vms the example VMs are in the estate too: the cloud-image template 9000 and the golden image 9001 are
exported and restored with the four container layers (the simulator's own VM restore, timed as a create), 1001 and
1002 cloned from the golden image. A VM's features run through the guest agent: they are slept the same way, and
the wait for cloud-init for 60 PVE seconds.

    python bench/artifacts.py [--time-scale 0.01] [--vms]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from common import phoenix_run, scratch, write_config_dir

import phoenix.doitx.tasks as phoenix_tasks
from phoenix import builder
from phoenix.artifacts.export import export
from phoenix.artifacts.store import ENV
from phoenix.doitx import current
from phoenix.steps import AgentRun
from phoenix.transport import simulated
from phoenix.transport.base import ExecResult, Output, ScriptRun

ROOT = Path(__file__).resolve().parent.parent
CT_SECS = {"create": 20, "clone": 10, "snapshot": 2, "resize": 2, "template": 5, "destroy": 5, "vzdump": 30,
           "start": 5, "shutdown": 3, "stop": 1}
SCRIPT_SECS = {"base_setup.sh": 120, "nvidia.sh": 600, "docker.sh": 90, "vllm.sh": 900,
               "phoenix_hypervisor_lxc_910.sh": 30, "phoenix_hypervisor_lxc_950.sh": 60}
CLOUD_INIT_SECS = 60
ARCHIVE_GB = {"ct900": 0.6, "ct901": 3.0, "ct902": 1.0, "ct920": 12.0,  # the modelled size of each layer's archive
              "vm9000": 0.6, "vm9001": 1.5}
BANDWIDTH_GB_S = 0.11
CT_TEMPLATES = ("ct900", "ct901", "ct902", "ct920")
VM_TEMPLATES = ("vm9000", "vm9001")


def model_durations(scale: float) -> None:
    """Scripts and archive copies take their modelled time on the simulated node (scaled like the tasks)."""
    run_script = simulated.SimulatedPct.run_script
    send = simulated.SimulatedNode.send
    agent_run = builder.Builder.agent_run

    def timed_script(self: simulated.SimulatedPct, run: ScriptRun, output: Output) -> ExecResult:
        time.sleep(SCRIPT_SECS.get(run.name, 0) * scale)
        return run_script(self, run, output)

    def timed_send(self: simulated.SimulatedNode, path: str, source: Any, mode: int = 0o644) -> None:
        name = path.rsplit("/", 1)[-1]
        if name.startswith("vzdump-"):
            kind, vmid = name.split("-")[1:3]
            time.sleep(ARCHIVE_GB.get(f"{'ct' if kind == 'lxc' else 'vm'}{vmid}", 0) / BANDWIDTH_GB_S * scale)
        send(self, path, source, mode)

    def timed_agent_run(self: builder.Builder, step: AgentRun) -> None:
        script = step.argv[-1].rsplit("/", 1)[-1]
        secs = CLOUD_INIT_SECS if step.argv[:2] == ("cloud-init", "status") else SCRIPT_SECS.get(script, 0)
        time.sleep(secs * scale)
        agent_run(self, step)

    simulated.SimulatedPct.run_script = timed_script  # type: ignore[method-assign]
    simulated.SimulatedNode.send = timed_send  # type: ignore[method-assign]
    builder.Builder.agent_run = timed_agent_run  # type: ignore[method-assign]


def cold(work: Path, scale: float, store: Path | None, vms: bool) -> dict[str, Any]:
    if store is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = str(store)
    config_dir = write_config_dir(work / "etc")
    if vms:  # the example VMs (write_config_dir leaves them out)
        shutil.copy(ROOT / "etc" / "phoenix_vm_configs.json", config_dir / "phoenix_vm_configs.json")
    r = phoenix_run(config_dir, work / "cache", 1, {"time_scale": scale, "ct_secs": CT_SECS}, work / "build.log",
                    prestart=True)
    r["config_dir"] = config_dir
    return r


def export_templates(work: Path, config_dir: Path, scale: float, store: Path, templates: tuple[str, ...]) -> float:
    os.environ[ENV] = str(store)
    t0 = time.perf_counter()
    phoenix_tasks.setup(ROOT, process=False, config_dir=config_dir, images_dir=ROOT / "images", cache_dir=work / "cache",
                        out=(work / "export.log").open("a"), sim_options={"time_scale": scale, "ct_secs": CT_SECS})
    run = current.current()
    try:
        export(run, list(templates))
    finally:
        run.close()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.01, help="real seconds per PVE second (default 0.01)")
    parser.add_argument("--vms", action="store_true", help="the example VMs too: 9000 and 9001 exported and restored")
    args = parser.parse_args()
    scale = args.time_scale
    templates = CT_TEMPLATES + (VM_TEMPLATES if args.vms else ())
    model_durations(scale)
    print(f"phoenix artifact benchmark, {datetime.date.today()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, time_scale {scale}, -n 1")
    print(f"  PVE seconds: {', '.join(f'{k} {v}' for k, v in CT_SECS.items())}")
    print(f"  scripts: {', '.join(f'{k} {v}' for k, v in SCRIPT_SECS.items())}")
    print(f"  archive copies at {BANDWIDTH_GB_S * 1000:.0f} MB/s: "
          f"{', '.join(f'{k} {v} GB = {v / BANDWIDTH_GB_S:.0f}' for k, v in ARCHIVE_GB.items() if k in templates)}")
    if args.vms:
        print(f"  VMs: features through the agent as the scripts above, the wait for cloud-init {CLOUD_INIT_SECS}")
    work = scratch("artifacts")
    store = work / "store"
    baked = cold(work / "without", scale, None, args.vms)
    assert baked["rc"] == 0, baked["doit_output"]
    export_s = export_templates(work / "without", baked["config_dir"], scale, store, templates)
    restored = cold(work / "with", scale, store, args.vms)
    assert restored["rc"] == 0, restored["doit_output"]
    b, r = baked["last_run"]["tasks"], restored["last_run"]["tasks"]
    print("\nper layer (s):        baked     with the store")
    for key in b:
        print(f"  {key}: {b[key]['seconds']:>10.3f}  {r[key]['seconds']:>10.3f}  {r[key]['outcome']}")
    tb = sum(b[k]["seconds"] for k in templates)
    tr = sum(r[k]["seconds"] for k in templates)
    print()
    if args.vms:
        vb = sum(b[k]["seconds"] for k in VM_TEMPLATES)
        vr = sum(r[k]["seconds"] for k in VM_TEMPLATES)
        print(f"two VM template layers: baked {vb:.3f} s = {vb / scale:.0f} PVE s, restored {vr:.3f} s = "
              f"{vr / scale:.0f} PVE s; ratio {vr / vb:.3f}")
    print(f"{len(templates)} template layers: baked {tb:.3f} s = {tb / scale:.0f} PVE s, restored {tr:.3f} s = "
          f"{tr / scale:.0f} PVE s; ratio {tr / tb:.3f} (target < 0.333: {'MET' if tr / tb < 1 / 3 else 'NOT MET'})")
    print(f"whole cold build: without {baked['seconds']:.3f} s, with {restored['seconds']:.3f} s; "
          f"ratio {restored['seconds'] / baked['seconds']:.3f}; export of the {len(templates)} layers {export_s:.3f} s "
          f"({export_s / scale:.0f} PVE s); API requests {baked['requests']} / {restored['requests']}")


if __name__ == "__main__":
    main()
