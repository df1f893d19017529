"""Environment-layer no-op benchmark: 50 stacks over 10 Portainer environments, already deployed.

The estate: the example containers, nine more Docker guests cloned from 902 (each a Portainer agent environment) and
the server's own guest 910, each running five stacks (svc_a .. svc_e, the qdrant compose file with its own port):
10 environments, 50 stacks, 76 tasks. Built once on the simulator served in its own process (its Portainer stand-in
with it), then `doit` as a command timed against bare doit commands with 76 tasks of the same depth (bench/bare.py),
round by round; requests counted from last-run.json (target 1 Proxmox + 1 Portainer).

    python bench/stacks.py [--repeat 10] [--jobs 4]"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

from common import median, phoenix_run, scratch, served_sim, write_config_dir
from noop import KINDS, cli_rounds, ratio

STACKS = [f"svc_{c}" for c in "abcde"]
GUESTS = 9  # Docker guests besides 910


def estate(config_dir: Path) -> int:
    """Write the estate into config_dir; the number of tasks."""
    lxc_path = config_dir / "phoenix_lxc_configs.json"
    data: dict[str, Any] = json.loads(lxc_path.read_text())
    cts = data["lxc_configs"]
    choice = [{"name": s, "environment": "production"} for s in STACKS]
    cts["910"]["docker_stacks"] = choice
    for i in range(GUESTS):
        ctid = 930 + i
        g = copy.deepcopy(cts["910"])
        for key in ("application_script", "app", "mount_points", "onboot"):
            g.pop(key, None)
        g.update({"name": f"docker-{ctid}", "description": "bench Docker guest, a Portainer agent environment",
                  "mac_address": f"52:54:00:cd:00:{i:02x}", "docker_stacks": choice,
                  "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": f"10.0.5.{10 + i}/24", "gw": "10.0.5.1"}})
        cts[str(ctid)] = g
    lxc_path.write_text(json.dumps(data, indent=2))
    stacks = {"docker_stacks": {name: {"compose_file_path": "stacks/qdrant/docker-compose.yml", "environments": {
        "production": {"variables": [{"name": "QDRANT_PORT", "value": str(6333 + n)}]}}} for n, name in enumerate(STACKS)}}
    (config_dir / "phoenix_stacks_config.json").write_text(json.dumps(stacks, indent=2))
    return len(cts) + 1 + (GUESTS + 1) + (GUESTS + 1) * len(STACKS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=4)
    args = parser.parse_args()
    work = scratch("stacks")
    cache = work / "cache"
    with served_sim(cache):
        config_dir = write_config_dir(work / "etc")
        tasks = estate(config_dir)
        first = phoenix_run(config_dir, cache, args.jobs, {"time_scale": 0}, work / "build.log")
        done = first["last_run"]["tasks"]
        if first["rc"] != 0 or len(done) != tasks or {t["outcome"] for t in done.values()} != {"built"}:
            raise SystemExit(f"the first build failed (rc {first['rc']}):\n{first['doit_output'][-3000:]}")
        again = phoenix_run(config_dir, cache, args.jobs, {"time_scale": 0}, work / "noop.log")
        run = again["last_run"]
        if again["rc"] != 0 or {t["outcome"] for t in run["tasks"].values()} != {"up-to-date"}:
            raise SystemExit(f"the second run was not a no-op:\n{again['doit_output'][-3000:]}")
        # bare doit: the same number of tasks, chains as deep as a stack's (900 -> 902 -> 910/93x -> env -> stack)
        shape: dict[int, int | None] = {i: (i - 1 if i % 5 else None) for i in range(tasks)}
        cli, bare = cli_rounds(work, config_dir, cache, shape, args.jobs, args.repeat)
    print(f"phoenix stacks no-op benchmark, {datetime.date.today()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, doit -n {args.jobs}, {args.repeat} rounds")
    print(f"  estate: {len(STACKS) * (GUESTS + 1)} stacks on {GUESTS + 1} environments, {tasks} tasks; first build "
          f"{first['seconds']:.2f}s")
    print(f"  no-op requests: {run['api_requests']} Proxmox + {run['portainer_requests']} Portainer (target 1 + 1): "
          f"{'MET' if (run['api_requests'], run['portainer_requests']) == (1, 1) else 'MISSED'}")
    print(f"  `doit` as a command: phoenix {median(cli):.3f}s; " +
          "; ".join(f"bare {k} {median(v):.3f}s" for k, v in bare.items()))
    for kind in KINDS:
        r = ratio(cli, bare[kind])
        print(f"  target: within 2x of bare doit ({kind}) as a command: {'MET' if r <= 2 else 'MISSED'} (ratio {r:.2f})")
    print(f"  runs: phoenix {' '.join(f'{s:.2f}' for s in cli)}; " +
          "; ".join(f"bare {k} {' '.join(f'{s:.2f}' for s in v)}" for k, v in bare.items()))


if __name__ == "__main__":
    main()
