"""A Phoenix checkout in a temp dir, doit run in-process against the embedded fakepve host over HTTPS."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

from phoenix.doitx import current, tasks
from phoenix.sim.host import SimHost, shared

REPO = Path(__file__).resolve().parents[2]
NODE = "/api2/json/nodes/pve1"
LEASE_PATH = "/api2/json/pools"
ALL_TASKS = ("ct900", "ct901", "ct902", "ct910", "ct920", "ct950")


@dataclass
class Result:
    rc: int
    output: str
    run: Any

    @property
    def last_run(self) -> dict[str, Any]:
        return json.loads((self.run.cache / "last-run.json").read_text())

    def outcomes(self) -> dict[str, str]:
        return {k: v["outcome"] for k, v in self.last_run["tasks"].items()}


def copy_project(root: Path, *, config: bool = True, stacks: bool = False, vms: bool = False, host: bool = False) -> Path:
    """A fresh copy of the project as a user has it: etc/ (no secret files; unless config=False), images/, stacks/,
    cloudinit/, dodo.py. Without stacks, the guests choose no docker_stacks: the container layers alone, which these
    tests are about (tests/stacks runs the estate as shipped, stacks included). The example VMs
    (etc/phoenix_vm_configs.json) only with vms=True. The node's own parts (the hypervisor config's `host`, which
    tests/core/test_host_parts.py sets as each test needs) only with host=True: the example as shipped."""
    if config:
        skip = ("*.conf",) if vms else ("*.conf", "phoenix_vm_configs.*")
        shutil.copytree(REPO / "etc", root / "etc", ignore=shutil.ignore_patterns(*skip))
        if not host:
            hv = root / "etc" / "phoenix_hypervisor_config.json"
            hv_data = json.loads(hv.read_text())
            hv_data.pop("host", None)
            hv.write_text(json.dumps(hv_data, indent=2))
        if not stacks:
            path = root / "etc" / "phoenix_lxc_configs.json"
            data = json.loads(path.read_text())
            for guest in data["lxc_configs"].values():
                guest.pop("docker_stacks", None)
            path.write_text(json.dumps(data, indent=2))
            vm_path = root / "etc" / "phoenix_vm_configs.json"
            if vm_path.exists():
                vm_data = json.loads(vm_path.read_text())
                for vm in [vm_data.get("vm_defaults") or {}, *vm_data.get("virtual_machines", [])]:
                    vm.pop("docker_stacks", None)
                vm_path.write_text(json.dumps(vm_data, indent=2))
    shutil.copytree(REPO / "images", root / "images")
    shutil.copytree(REPO / "stacks", root / "stacks")
    shutil.copytree(REPO / "cloudinit", root / "cloudinit")
    for name in ("dodo.py", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    return root


def run_doit(root: Path, args: tuple[str, ...], **setup: Any) -> Result:
    """One doit run in-process in the project at root, as dodo.py would set it up (setup: tasks.setup's keywords)."""
    out = io.StringIO()
    config, gen = tasks.setup(root, process=False, config_dir=root / "etc", images_dir=root / "images",
                              cache_dir=root / ".cache", out=out, **setup)
    config = {**config, "outfile": out}  # doit binds sys.stdout as the default when it is imported
    # doit reads [tool.doit] (the plan and forget commands) from ./pyproject.toml only
    main = DoitMain(ModuleTaskLoader({"DOIT_CONFIG": config, "task_resources": gen}), config_filenames=("pyproject.toml",))
    cwd = os.getcwd()
    try:
        os.chdir(root)
        with redirect_stdout(out), redirect_stderr(out):
            rc = main.run(list(args))
    finally:
        os.chdir(cwd)
    run = current.RUN
    assert run is not None
    run.close()
    return Result(rc, out.getvalue(), run)


def doit_command(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real `doit` command in the project at root, with no PHOENIX_* settings of this shell."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=root, capture_output=True, text=True,
                          timeout=timeout, env={**base, "PYTHONPATH": str(REPO), **(env or {})})


class Checkout:
    """A copy of the example estate with its own .cache; the simulator stays up across runs of one test."""

    def __init__(self, root: Path, sim_options: dict[str, Any] | None = None, *, stacks: bool = False,
                 vms: bool = False, host: bool = False):
        self.root = copy_project(root, stacks=stacks, vms=vms, host=host)
        self.cache = root / ".cache"
        self.sim_options = sim_options or {}
        self.sim: SimHost = shared(self.cache / "sim", **self.sim_options)

    @property
    def pve(self):
        if self.sim.endpoint is None:
            self.sim.start()
        return self.sim.pve

    def doit(self, *args: str, own_sim: bool = True) -> Result:
        """One doit run in-process. own_sim=False leaves the simulator to the run (or to a served one)."""
        if own_sim:
            self.pve  # noqa: B018 - the test owns the simulator, so faults can be injected before a run
        return run_doit(self.root, args, sim_options=self.sim_options)

    # --------------------------------------------------------------- host

    def writes(self, since: int = 0) -> list[tuple[str, str]]:
        """Writes to the host's guests and storage since the mark (the run lease's pool is left out: lease_writes)."""
        return [(m, p) for m, p, _ in self.pve.requests[since:] if m != "GET" and not p.startswith(LEASE_PATH)]

    def lease_writes(self, since: int = 0) -> list[tuple[str, str]]:
        """Writes to the run lease's pool since the mark."""
        return [(m, p) for m, p, _ in self.pve.requests[since:] if m != "GET" and p.startswith(LEASE_PATH)]

    def mark(self) -> int:
        return len(self.pve.requests)

    def ct(self, vmid: int):
        return self.pve.ct(vmid)

    def tags(self, vmid: int) -> set[str]:
        return set((self.ct(vmid).config.get("tags") or "").split(";"))

    def lxc_config(self) -> dict[str, Any]:
        return json.loads((self.root / "etc" / "phoenix_lxc_configs.json").read_text())

    def write_lxc_config(self, data: dict[str, Any]) -> None:
        (self.root / "etc" / "phoenix_lxc_configs.json").write_text(json.dumps(data, indent=2))

    def edit_guest(self, ctid: int, **changes: Any) -> None:
        data = self.lxc_config()
        data["lxc_configs"][str(ctid)].update(changes)
        self.write_lxc_config(data)

    def stop_sim(self) -> None:
        self.sim.stop()


def audit(co: Checkout) -> None:
    """Fail on any request fakepve accepted that a real node refuses (pve_audit.py); after every simulated test."""
    from .pve_audit import refused

    if co.sim.pve is not None:
        found = refused(co.pve.requests, list(co.pve.vms))
        assert not found, "requests a real Proxmox node refuses:\n" + "\n".join(found)


@contextmanager
def audited(co: Checkout) -> Iterator[Checkout]:
    """A checkout whose requests are audited when it is done with (also after a failed test: a fixture's teardown),
    its simulator stopped in any case."""
    try:
        yield co
        audit(co)
    finally:
        co.stop_sim()


@pytest.fixture
def checkout(tmp_path: Path):
    with audited(Checkout(tmp_path / "phoenix")) as co:
        yield co


@pytest.fixture
def vm_checkout(tmp_path: Path):
    """The example estate with its VMs (containers and VMs), audited like checkout."""
    with audited(Checkout(tmp_path / "phoenix", vms=True)) as co:
        yield co


@pytest.fixture
def built(checkout: Checkout) -> Checkout:
    result = checkout.doit()
    assert result.rc == 0, result.output
    return checkout
