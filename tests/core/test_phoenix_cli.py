"""The `phoenix` command, end to end on the simulated host: the seeds' verbs are the same doit runs as `doit`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, copy_project


def phoenix(root: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    return subprocess.run([sys.executable, "-m", "phoenix", "--project", str(root), *args], capture_output=True,
                          text=True, timeout=300, env={**base, "PYTHONPATH": str(REPO), **(env or {})}, input=stdin)


def outcomes(root: Path) -> dict[str, str]:
    return {k: v["outcome"] for k, v in json.loads((root / ".cache" / "last-run.json").read_text())["tasks"].items()}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "phoenix")


def test_create_builds_a_guest_and_what_it_needs_under_every_spelling(project: Path):
    first = phoenix(project, "create", "902")
    assert first.returncode == 0, first.stdout + first.stderr
    assert outcomes(project) == {"ct900": "built", "ct902": "built"}
    assert "phoenix: 2 built" in first.stdout  # doit's run: the same summary and last-run.json
    assert phoenix(project, "910").returncode == 0 and outcomes(project)["ct910"] == "built"  # the seeds' bare CTID
    assert phoenix(project, "--create-vm", "BaseTemplateGPU").returncode == 0 and outcomes(project)["ct901"] == "built"


def test_letsgo_plan_and_status(project: Path):
    built = phoenix(project, "LetsGo", "-n", "4")
    assert built.returncode == 0 and "6 built" in built.stdout, built.stdout + built.stderr
    assert "nothing to do" in phoenix(project, "LetsGo").stdout
    script = project / "images" / "features" / "vllm.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    plan = phoenix(project, "plan", "950")
    assert "ct950  follows (parent ct920 rebuilds): feature vllm changed" in plan.stdout, plan.stdout
    rows = {r["task"]: r for r in json.loads(phoenix(project, "status", "--json").stdout)}
    assert rows["ct900"]["up_to_date"] and rows["ct900"]["state"] == "stopped" and rows["ct900"]["ip"] == "10.0.0.200/24"
    assert rows["ct920"]["why"] == "rebuild: feature vllm changed" and not rows["ct950"]["up_to_date"]
    table = phoenix(project, "status").stdout
    assert "ct950  lxc   ct920   pve1  running  10.0.0.150/24  no: follows (parent ct920 rebuilds)" in table, table
    assert table.splitlines()[-1] == "phoenix status: 6 resources: 2 running, 4 stopped; 2 not up to date", table


def test_start_stop_and_delete_with_their_refusals(project: Path):
    assert phoenix(project, "LetsGo").returncode == 0
    assert phoenix(project, "stop", "910").stdout == "ct910 (Portainer) stopped\n"
    assert phoenix(project, "start", "Portainer").stdout == "ct910 (Portainer) started\n"
    refused = phoenix(project, "delete", "902", "--yes")
    assert refused.returncode == 1 and "ct910" in refused.stderr and "--with-children" in refused.stderr
    unconfirmed = phoenix(project, "delete", "910")  # not a terminal: nobody can be asked
    assert unconfirmed.returncode == 1 and "confirm with --yes" in unconfirmed.stderr
    no = phoenix(project, "delete", "910", stdin="n\n")
    assert no.returncode == 1  # stdin is not a terminal here either: --yes is the only way
    done = phoenix(project, "delete", "902", "--with-children", "--yes")
    assert done.returncode == 0, done.stderr
    assert "deleted ct910 (guest 910)" in done.stdout and "deleted ct902 (guest 902)" in done.stdout
    assert done.stdout.index("ct910 (guest 910)") < done.stdout.index("ct902 (guest 902)")  # children first
    assert "ct910, ct902 are still in the config: the next `doit` builds them again; remove them" in done.stdout
    rows = {r["task"]: r for r in json.loads(phoenix(project, "status", "--json").stdout)}
    assert rows["ct902"]["state"] == "absent" and rows["ct910"]["state"] == "absent"


def test_unknown_verbs_and_ids_get_a_suggestion_and_exit_2(project: Path):
    verb = phoenix(project, "creat", "950")
    assert verb.returncode == 2 and "did you mean 'create'?" in verb.stderr
    ident = phoenix(project, "create", "9500")
    assert ident.returncode == 2 and "did you mean 950" in ident.stderr
    assert phoenix(project, "setup-hypervisor").stderr.startswith("phoenix: ")  # no host parts yet: said, not a crash
    help_ = phoenix(project, "delete", "--help")
    assert help_.returncode == 0 and "--with-children" in help_.stdout


def test_setup_hypervisor_runs_the_host_parts_only(project: Path):
    path = project / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    data["host"] = {"repos": {"no_subscription": True}, "network": {"bridges": [{"name": "vmbr1", "vlan_aware": True}]}}
    path.write_text(json.dumps(data))
    done = phoenix(project, "--setup-hypervisor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcomes(project) == {"host:network": "built", "host:repos": "built"}  # no guest
    again = phoenix(project, "setup-hypervisor")
    assert "nothing to do" in again.stdout and outcomes(project) == {"host:network": "up-to-date", "host:repos": "up-to-date"}


def test_sync_says_when_the_estate_has_nothing_to_sync(project: Path):
    result = phoenix(project, "sync", "portainer")
    assert result.returncode == 1 and "no Portainer and no stacks to sync" in result.stderr
    result = phoenix(project, "sync", "stack", "qdrant", "to", "910")  # names nothing: a usage error
    assert result.returncode == 2 and "no stack 'qdrant' on ct910" in result.stderr
    result = phoenix(project, "sync", "stacks")
    assert result.returncode == 2 and "usage: phoenix sync portainer" in result.stderr


def on_the_host(root: Path, change) -> None:
    """Change the simulated host between two phoenix runs, as a person would by hand: change(pve)."""
    from phoenix.sim.host import SimHost

    sim = SimHost(root / ".cache" / "sim")
    sim.start()
    try:
        change(sim.pve)
    finally:
        sim.stop()


def test_the_seeds_spellings_a_protected_and_a_foreign_guest(project: Path):
    """The README's table: --stop-vm/--start-vm/--delete-vm; delete refuses a protected guest unless
    PHOENIX_DESTROY_PROTECTED names it, and a guest that is not Phoenix's (start and stop too)."""
    assert phoenix(project, "LetsGo").returncode == 0
    assert phoenix(project, "--stop-vm", "910").stdout == "ct910 (Portainer) stopped\n"
    assert phoenix(project, "--start-vm", "910").stdout == "ct910 (Portainer) started\n"

    def protect(pve) -> None:
        pve.ct(950).config["protection"] = 1
    on_the_host(project, protect)
    refused = phoenix(project, "--delete-vm", "950", "--yes")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "ct950 (guest 950) has protection set. Nothing was deleted." in refused.stderr
    assert "PHOENIX_DESTROY_PROTECTED=950 phoenix delete 950" in refused.stderr
    assert {r["task"]: r for r in json.loads(phoenix(project, "status", "--json").stdout)}["ct950"]["state"] == "running"
    other = phoenix(project, "delete", "950", "--yes", env={"PHOENIX_DESTROY_PROTECTED": "920"})  # names another
    assert other.returncode == 1 and "has protection set" in other.stderr
    allowed = phoenix(project, "delete", "950", "--yes", env={"PHOENIX_DESTROY_PROTECTED": "950"})
    assert allowed.returncode == 0 and "deleted ct950 (guest 950)" in allowed.stdout, allowed.stdout + allowed.stderr

    def disown(pve) -> None:
        pve.ct(910).config["tags"] = "hand-made"
    on_the_host(project, disown)
    for args in (("delete", "910", "--yes"), ("stop", "910")):
        foreign = phoenix(project, *args)
        assert foreign.returncode == 1 and "guest 910 is not Phoenix's" in foreign.stderr, foreign.stderr
    rows = {r["task"]: r for r in json.loads(phoenix(project, "status", "--json").stdout)}
    assert rows["ct910"]["state"] == "running" and rows["ct950"]["state"] == "absent"


def test_delete_asks_on_a_terminal(project: Path):
    """The README: delete asks on a terminal (and wants --yes elsewhere: the test above)."""
    import pty

    assert phoenix(project, "create", "902").returncode == 0
    for answer, deleted in (("n", False), ("y", True)):
        main, side = pty.openpty()
        try:
            os.write(main, f"{answer}\n".encode())
            done = subprocess.run([sys.executable, "-m", "phoenix", "--project", str(project), "delete", "902"],
                                  stdin=side, capture_output=True, text=True, timeout=300,
                                  env={**{k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")},
                                       "PYTHONPATH": str(REPO)})
        finally:
            os.close(main)
            os.close(side)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Destroy ct902 (guest 902)? Its disks are deleted. [y/N] " in done.stdout
        assert ("deleted ct902 (guest 902)" in done.stdout) is deleted
        assert ("ct902 is still in the config: the next `doit` builds it again; remove it from the config to keep it "
                "gone" in done.stdout) is deleted, done.stdout
        assert ("nothing was deleted" in done.stdout) is not deleted
    assert {r["task"]: r for r in json.loads(phoenix(project, "status", "--json").stdout)}["ct902"]["state"] == "absent"


def test_start_and_delete_are_refused_while_another_run_holds_the_host(project: Path):
    """The README: start and stop (and delete) act under the host's lease, as a run that writes does."""
    import time

    from phoenix import lease as L

    assert phoenix(project, "create", "902").returncode == 0

    def held_elsewhere(pve) -> None:
        holder = L.Holder("feed0001", "elsewhere", 1, 1, int(time.time()), int(time.time()) + 600)
        pve.pools[L.POOL] = set()
        pve.pool_info[L.POOL] = {"comment": L.comment(holder), "storage": set()}
    on_the_host(project, held_elsewhere)
    for args in (("start", "902"), ("delete", "902", "--yes")):  # 902, a template layer, is stopped
        refused = phoenix(project, *args)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "another Phoenix run is changing this host: run feed0001 on elsewhere" in refused.stderr
    rows = {r["task"]: r for r in json.loads(phoenix(project, "status", "--json").stdout)}
    assert rows["ct902"]["state"] == "stopped"


def test_phoenix_runs_in_the_project_or_is_told_where_it_is(project: Path, tmp_path: Path):
    """The README: run it in the project (beside dodo.py) or give --project DIR; guests by name as by CTID."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}, "PYTHONPATH": str(REPO)}
    here = subprocess.run([sys.executable, "-m", "phoenix", "plan", "vllmQwen3Coder"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert here.returncode == 0, here.stdout + here.stderr
    assert re.search(r"^ct950\s+build: not on the host$", here.stdout, re.M), here.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lost = subprocess.run([sys.executable, "-m", "phoenix", "status"], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=60)
    assert lost.returncode == 1 and "Traceback" not in lost.stderr
    assert f"{elsewhere / 'dodo.py'} not found: run phoenix in the project (beside dodo.py), or give --project DIR" \
        in lost.stderr, lost.stderr


@pytest.mark.parametrize("verb", [("status",), ("create", "950"), ("delete", "950", "--yes")])
def test_a_bad_config_exits_2_from_every_verb_as_from_doit(project: Path, verb: tuple[str, ...]):
    """The README: phoenix's exit codes are doit's; 2 for bad configuration, with nothing on the host touched."""
    path = project / "etc" / "phoenix_lxc_configs.json"
    path.write_text(path.read_text().replace('"cores": 8', '"cores": 0'))
    result = phoenix(project, *verb)
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'lxc_configs.950.cores: Input should be greater than or equal to 1 (got 0)' in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / ".cache" / "sim" / "state.json").exists()


def test_status_gives_vms_their_cloud_init_address(tmp_path: Path):
    """A VM's address is its network_config (cloud-init), as a container's is its net0; DHCP says so."""
    project = copy_project(tmp_path / "phoenix", vms=True)
    path = project / "etc" / "phoenix_vm_configs.json"
    data = json.loads(path.read_text())
    assert data["virtual_machines"][2]["vm_id"] == 1001
    data["virtual_machines"][2].pop("network_config")
    path.write_text(json.dumps(data))
    rows = {r["task"]: r for r in json.loads(phoenix(project, "status", "--json").stdout)}
    assert rows["vm1002"]["ip"] == "10.0.0.102/24" and rows["vm1001"]["ip"] == "dhcp"
    assert rows["ct900"]["ip"] == "10.0.0.200/24"
