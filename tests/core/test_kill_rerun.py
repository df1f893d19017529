"""Kill and rerun: a real `doit` process interrupted (SIGINT, SIGTERM, SIGKILL) at a chosen point of a VM build, then
run again. What the simulator holds afterwards is read from its saved state (what a crash leaves) and from a
simulator started on it (what the next run finds); one rerun converges to the estate an uninterrupted build makes,
and the run after it is a no-op (1 Proxmox request)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from phoenix.sim.host import SimHost, spawn
from phoenix.sim.store import VM, VOLUMES, Store

from .conftest import REPO, copy_project

# A slowed task takes 30 s real (3000 PVE seconds at 0.01): the signal always lands while it runs.
SCALE = "0.01"


def env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}, "PYTHONPATH": str(REPO), **extra}


def doit(root: Path, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=root, capture_output=True, text=True,
                          timeout=timeout, env=env(**extra))


def sim_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phoenix.sim", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def saved_vms(root: Path) -> dict[int, dict[str, Any]]:
    """The VMs' configs as saved: what a crash leaves (read from the files, no simulator started)."""
    records = Store(root / ".cache" / "sim", lambda _: None).read()
    return {int(ident): value["config"] for (kind, ident), value in records.items() if kind == VM}


def on_host(root: Path) -> tuple[dict[int, dict[str, Any]], set[int]]:
    """What the next run finds: every VM's config, and the owners of the disk images in storage."""
    host = SimHost(root / ".cache" / "sim", note=lambda _: None)
    host.start()
    try:
        vms = {vm.vmid: dict(vm.config) for vm in host.pve.vms}
        owners = {vol.get("vmid") for store in host.pve.storages.values() for vol in store.get("volumes", {}).values()
                  if vol.get("content") == "images"}
        return vms, owners
    finally:
        host.stop()


def wait_until(check: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()[0]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def interrupted(root: Path, target: str, sig: signal.Signals, when: Callable[[], bool], what: str,
                tasks: str, **extra: str) -> tuple[int, str]:
    """`doit TARGET` with the simulator's tasks slowed (tasks: PHOENIX_SIM_TASK_SECONDS), sent sig once when()."""
    proc = subprocess.Popen([sys.executable, "-m", "doit", *target.split()], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=env(PHOENIX_SIM_TIME_SCALE=SCALE, PHOENIX_SIM_TASK_SECONDS=tasks, **extra))
    try:
        wait_until(when, proc, what)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out


def locked(root: Path, vmid: int, lock: str) -> Callable[[], bool]:
    """Whether the saved state shows VM vmid with this lock (the simulator saves a task's guest as it starts)."""
    def check() -> bool:
        try:
            return saved_vms(root).get(vmid, {}).get("lock") == lock
        except (OSError, ValueError):
            return False
    return check


def converges(root: Path, target: str) -> subprocess.CompletedProcess:
    """One rerun builds the rest; the run after it is a 1-request no-op."""
    rerun = doit(root, target)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out
    assert "Traceback" not in out
    again = doit(root, target)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr
    assert json.loads((root / ".cache" / "last-run.json").read_text())["api_requests"] == 1
    return rerun


def records(root: Path) -> dict[int, dict[str, Any]]:
    """The layer record of every VM on the host, parsed from its description."""
    from phoenix.facts.guests import parse_record

    vms, _ = on_host(root)
    return {vmid: parse_record(config.get("description")) for vmid, config in vms.items()}


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    """The example estate's VMs, with the template 9000 and the golden image 9001 built (no containers)."""
    root = copy_project(tmp_path / "phoenix", vms=True)
    built = doit(root, "vm9001")
    assert built.returncode == 0, built.stdout + built.stderr
    return root


# ------------------------------------------------------------- a VM clone interrupted


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_mid_vm_clone_removes_the_half_made_clone_and_the_rerun_converges(golden: Path,
                                                                                          sig: signal.Signals):
    rc, out = interrupted(golden, "vm1002", sig, locked(golden, 1002, "clone"), "the clone of 1002", "clone=3000")
    assert rc in (130, -signal.SIGINT), out
    assert "phoenix: interrupted" in out and "Traceback" not in out, out
    assert "VM 1002: half-made by a task that failed (lock 'clone'), removed with its disks" in out, out
    # as Proxmox's failed clone leaves it: no VM 1002 (saved so, not only in memory), no disk of it, its source unlocked
    assert 1002 not in saved_vms(golden)
    vms, owners = on_host(golden)
    assert 1002 not in vms and 1002 not in owners
    assert "lock" not in vms[9001] and "lock" not in vms[9000]
    rerun = converges(golden, "vm1002")
    assert "vm1002 full clone of vm9001@docker-golden" in rerun.stdout
    assert records(golden)[1002]["layer"] == "vm1002" and "identity" in records(golden)[1002]


def test_sigkill_mid_linked_clone_leaves_the_lock_as_a_crash_does_and_one_rerun_converges(tmp_path: Path):
    root = copy_project(tmp_path / "phoenix", vms=True)
    assert doit(root, "vm9000").returncode == 0
    rc, out = interrupted(root, "vm9001", signal.SIGKILL, locked(root, 9001, "clone"), "the clone of 9001",
                          "clone=3000")
    assert rc == -signal.SIGKILL
    assert saved_vms(root)[9001]["lock"] == "clone"  # what the crash left: the clone's target, locked
    rerun = converges(root, "vm9001")
    out = rerun.stdout + rerun.stderr
    assert "were half-created when the last simulator" in out and "9001" in out, out
    assert "breaking the host's lease of run" in out  # the killed run's lease is taken over at once
    vms, _ = on_host(root)
    assert "lock" not in vms[9001] and records(root)[9001]["layer"] == "vm9001"


def test_a_lock_a_killed_run_left_on_a_vm_is_named_with_the_unlock_that_works(golden: Path, tmp_path: Path):
    """A lock that is no half-made guest's (vzdump's `backup`, from an export killed mid-dump) stays after a crash, as
    on PVE: a build that would clone from it and the export both refuse before any write, with one message naming
    `python -m phoenix.sim unlock 9001`, which unlocks the VM; then one rerun of each converges."""
    state = golden / ".cache" / "sim"
    artifacts = {"PHOENIX_ARTIFACTS": str(tmp_path / "artifacts")}
    # each dump takes 5 s: 9000's ends, and the run is killed while 9001's runs
    rc, _ = interrupted(golden, "export vm9001", signal.SIGKILL, locked(golden, 9001, "backup"), "the dump of 9001",
                        "vzdump=500", **artifacts)
    assert rc == -signal.SIGKILL
    # the store holds 9000's archive, exported before the kill, and nothing of 9001's (not even a partial file)
    assert [p.name for p in (tmp_path / "artifacts").iterdir() if p.name.startswith(".")] == []
    assert len(list((tmp_path / "artifacts").glob("*.json"))) == 1
    fix = ("VM 9001 is locked (backup) but no task is running: an interrupted operation left the lock. "
           "Check the guest, then run python -m phoenix.sim unlock 9001 and rerun.")
    for args in (("vm1002",), ("export", "vm9001")):
        refused = doit(golden, *args, **artifacts)
        said = refused.stdout + refused.stderr
        assert refused.returncode == 1 and "Traceback" not in said, said
        assert fix in said, said
        vms, _ = on_host(golden)
        assert vms[9001]["lock"] == "backup" and 1002 not in vms  # nothing forced, nothing made
    done = sim_command("unlock", "9001", "--state-dir", str(state))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"VM 9001 on the simulated host saved in {state}: lock 'backup' removed" in done.stdout
    converges(golden, "vm1002")
    exported = doit(golden, "export", "vm9001", **artifacts)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert len(list((tmp_path / "artifacts").glob("*.json"))) == 2
    again = sim_command("unlock", "9001", "--state-dir", str(state))
    assert again.returncode == 0 and "VM 9001 on the simulated host" in again.stdout and "is not locked" in again.stdout


def test_unlock_removes_a_half_made_vm_clone_through_the_served_simulator_and_in_the_saved_state(tmp_path: Path):
    from phoenix.pve.client import Pve
    from phoenix.sim.host import served

    state = tmp_path / "sim"
    for through_server in (True, False):
        proc = spawn(state, "--time-scale", SCALE, "--task-seconds", "clone=3000", stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
        try:
            found = served(state)
            assert found is not None
            client = Pve.of(found[0])
            if through_server:
                client.run("POST", "nodes/pve1/qemu", vmid=9000, name="root", scsi0="local-lvm:1")
            client.call("POST", "nodes/pve1/qemu/9000/clone", newid=9001, name="half", full=1)
            assert client.get("nodes/pve1/qemu/9001/config").get("lock") == "clone"
            if through_server:
                done = sim_command("unlock", "9001", "--state-dir", str(state))
                assert done.returncode == 0, done.stdout + done.stderr
                assert "VM 9001 on the simulated host served by process" in done.stdout
                assert "was half-created (lock 'clone'): removed" in done.stdout
                assert not [vm for vm in client.get("cluster/resources") if vm.get("vmid") == 9001]
        finally:
            if through_server:
                proc.terminate()
            else:
                proc.kill()
            proc.wait(30)
    # killed with the clone running: the saved state keeps the locked target until unlock removes it
    assert saved_vms_at(state)[9001]["lock"] == "clone"
    done = sim_command("unlock", "9001", "--state-dir", str(state))
    assert done.returncode == 0 and "was half-created (lock 'clone'): removed" in done.stdout, done.stdout
    assert 9001 not in saved_vms_at(state) and 9000 in saved_vms_at(state)
    records_ = Store(state, lambda _: None).read()
    assert not [v for (kind, _), vols in records_.items() if kind == VOLUMES for v in vols.values()
                if v.get("vmid") == 9001]


@pytest.mark.parametrize("vmid", [1002, 9001])
def test_a_clone_that_outlives_its_killed_run_is_waited_for_then_rebuilt(tmp_path: Path, vmid: int):
    """As on a real node, where a task runs on after the run that started it dies: the simulator served by its own
    process finishes the clone. A rerun while it runs refuses before any write, naming the clone's task; the rerun
    after it rebuilds the finished but unrecorded guest, and converges. It carries no record of its own, only the tags
    its source had: 1002 those of 9001's snapshot (taken while 9001 was being built), 9001 the record of the template
    9000 (a layer's build id is never another's: the planner tells it by that)."""

    golden = copy_project(tmp_path / "phoenix", vms=True)
    assert doit(golden, "vm9001" if vmid == 1002 else "vm9000").returncode == 0
    state = golden / ".cache" / "sim"
    server, endpoint = slow_clones(state)
    try:
        task = f"vm{vmid}"
        rc, _ = interrupted(golden, task, signal.SIGKILL, lambda: clone_running(endpoint), "the clone", "")
        assert rc == -signal.SIGKILL
        early = doit(golden, task)
        said = early.stdout + early.stderr
        assert early.returncode == 1 and "Traceback" not in said, said
        assert f"VM {vmid} is locked (clone) by a clone still running on the node: UPID:" in said, said
        deadline = time.monotonic() + 60
        while clone_running(endpoint):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        server = at_usual_speed(server, state)  # the clone has ended and is saved
        plan = doit(golden, "plan", task)
        assert re.search(rf"^{task}\s+rebuild: an earlier bake did not finish", plan.stdout, re.M), plan.stdout
        rerun = converges(golden, task)
        assert f"{task} rebuild: an earlier bake did not finish" in rerun.stdout, rerun.stdout
        assert f"destroy VM {vmid}" in rerun.stdout
    finally:
        server.terminate()
        server.wait(30)
    assert records(golden)[vmid]["layer"] == task and "identity" in records(golden)[vmid]


def slow_clones(state: Path) -> tuple[subprocess.Popen, Any]:
    """The simulator served by its own process (a node that goes on when a run ends), a clone taking 8 s real."""
    from phoenix.sim.host import served

    server = spawn(state, "--time-scale", SCALE, "--task-seconds", "clone=800", stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    found = served(state)
    assert found is not None
    return server, found[0]


def at_usual_speed(server: subprocess.Popen, state: Path) -> subprocess.Popen:
    """The same state served again with no slowed tasks (none may be running: they would fail as interrupted)."""
    server.terminate()
    server.wait(30)
    return spawn(state, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def clone_running(endpoint: Any) -> bool:
    from phoenix.pve.client import Pve

    tasks = Pve.of(endpoint).get("nodes/pve1/tasks", source="active")
    return any(t.get("type") == "qmclone" and (t.get("status") == "running" or not t.get("endtime")) for t in tasks)


def saved_vms_at(state: Path) -> dict[int, dict[str, Any]]:
    records_ = Store(state, lambda _: None).read()
    return {int(ident): value["config"] for (kind, ident), value in records_.items() if kind == VM}


def test_on_a_real_node_the_vm_lock_message_names_qm_unlock_and_a_running_clone():
    from types import SimpleNamespace

    from phoenix.kinds.vm import vm_lock

    def ctx(tasks: list[dict[str, Any]]) -> Any:
        return SimpleNamespace(pve=lambda: SimpleNamespace(get=lambda path, **_: tasks), node="pve1", simulated=False)

    dead = vm_lock(ctx([]), 1002, "clone")
    assert dead == ("VM 1002 is locked (clone) but no task is running: an interrupted operation left the lock. "
                    "Check the guest, then run `qm unlock 1002` on the node and rerun.")
    clone = {"type": "qmclone", "id": "9001", "status": "running", "upid": "UPID:pve1:1:2:3:qmclone:9001:x:"}
    assert vm_lock(ctx([clone]), 1002, "clone").startswith(
        "VM 1002 is locked (clone) by a clone still running on the node: UPID:pve1:1:2:3:qmclone:9001:x: (Proxmox lists a "
        "clone under its source, VM 9001)")
    backup = {"type": "vzdump", "id": "9001", "status": "running", "upid": "UPID:b"}
    assert "by a task still running on the node: UPID:b" in vm_lock(ctx([backup]), 9001, "backup")


# ------------------------------------------------- a cold build with VMs, interrupted at chosen points

COLD = "vm1002"                 # the template 9000 (from the cloud image), the golden image 9001, its full clone 1002
COLD_VMS = {9000, 9001, 1002}
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]


def snippets_dir(root: Path) -> Path:
    return root / ".cache" / "sim" / "storage" / "local" / "snippets"


def as_built(vms: dict[int, dict[str, Any]], owners: set[Any], root: Path) -> None:
    """The estate an uninterrupted build makes: each VM unlocked and recorded (no bake left half-done), no disk image
    owned by a VM that is not there, and every snippet a VM refers to present and whole (named by its content's
    sha256: a truncated one would not match), no temporary snippet file left."""
    import hashlib

    from phoenix.facts.guests import parse_record, split_tags
    from phoenix.sim.host import cicustom_volumes

    assert set(vms) == COLD_VMS, sorted(vms)
    for vmid, config in vms.items():
        tags = split_tags(config.get("tags"))
        assert "lock" not in config, (vmid, config["lock"])
        assert "phx-building" not in tags and any(t.startswith("phx-id-") for t in tags), (vmid, tags)
        assert parse_record(config.get("description"))["layer"] == f"vm{vmid}"
        for volume in cicustom_volumes(config.get("cicustom")):
            path = snippets_dir(root) / volume.split("snippets/", 1)[1]
            assert path.is_file(), f"VM {vmid} refers to {volume}, which is missing"
            assert path.stem.endswith(hashlib.sha256(path.read_bytes()).hexdigest()[:12]), f"{volume} is not whole"
    assert owners <= set(vms), f"disk images of VMs that are not there: {sorted(owners - set(vms))}"
    assert not [p.name for p in snippets_dir(root).iterdir() if p.name.startswith(".")]
    assert vms[9000].get("template") in (1, "1", True) and "docker-golden" in str(vms[9001].get("parent", ""))


def after_the_interrupt(rc: int, out: str, sig: signal.Signals) -> None:
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL
    else:  # Ctrl-C and SIGTERM end the run with one line, and the simulator stops as an interrupted node does
        assert rc in (130, -signal.SIGINT), out
        assert "phoenix: interrupted" in out and "Traceback" not in out, out


def network_snippet_temp(root: Path, vmid: int) -> Path:
    """The temporary name the network-config snippet of vmid is written under (its name is its content's hash)."""
    import hashlib

    rendered = doit(root, f"cloudinit:{vmid}")  # renders into .cache/cloudinit/, touches no host
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    data = (root / ".cache" / "cloudinit" / str(vmid) / "network-config").read_bytes()
    name = f"phoenix-{vmid}-network-{hashlib.sha256(data).hexdigest()[:12]}.yml"
    return snippets_dir(root) / f".{name}.phx-tmp"


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("point", ["import", "clone"])
def test_a_cold_build_interrupted_mid_task_converges_in_one_rerun(tmp_path: Path, point: str, sig: signal.Signals):
    """Mid import (9000 made from the cloud image) or mid clone (9001, the first clone: of the template 9000), the task
    slowed."""
    root = copy_project(tmp_path / "phoenix", vms=True)
    vmid, lock, tasks = (9000, "create", "create=3000") if point == "import" else (9001, "clone", "clone=3000")
    rc, out = interrupted(root, COLD, sig, locked(root, vmid, lock), f"the {point} of {vmid}", tasks)
    after_the_interrupt(rc, out, sig)
    vms, owners = on_host(root)
    assert vmid not in vms and vmid not in owners  # the half-made VM went with its failed task, and its disks
    converges(root, COLD)
    as_built(*on_host(root), root)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_cold_build_interrupted_mid_cloud_init_upload_converges_in_one_rerun(tmp_path: Path, sig: signal.Signals):
    """The upload of 9001's snippets held on its second file (a FIFO under its temporary name: the write blocks, as a
    slow SFTP upload does); after the interrupt that file is left truncated, as a killed upload leaves it."""
    root = copy_project(tmp_path / "phoenix", vms=True)
    temp = network_snippet_temp(root, 9001)
    temp.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(temp)
    try:
        rc, out = interrupted(root, COLD, sig, lambda: any(snippets_dir(root).glob("phoenix-9001-user-*.yml")),
                              "the upload of 9001's snippets", "")
    finally:
        temp.unlink()
    after_the_interrupt(rc, out, sig)
    temp.write_bytes(b"network: {version: 2, ether")  # what an upload cut off leaves under the temporary name
    vms, _ = on_host(root)
    assert 9001 not in vms and 9000 in vms
    converges(root, COLD)
    as_built(*on_host(root), root)


DOCKER_FEATURE = ("/usr/bin/env PHOENIX_CONTEXT=/var/lib/phoenix/context.json PHOENIX_ENV=/var/lib/phoenix/context.env "
                  "PHOENIX_LIB=/var/lib/phoenix/lib/phoenix-common.sh PHOENIX_SECRETS=/var/lib/phoenix/secrets "
                  "/bin/bash /var/lib/phoenix/run/docker.sh")


# A simulator served by a process of its own (its command line names phoenix.sim, as `served` wants), whose guest agent
# answers as the test says: the exec of 9001's docker feature never ends until the file agent-release appears; it
# writes agent-held once that exec was asked for.
HOLDING_SERVER = """
import json, signal, sys, threading
from pathlib import Path
from phoenix.sim.dirlock import SERVED
from phoenix.sim.host import SimHost, advertise
state = Path(sys.argv[1])
host = SimHost(state, role=SERVED, note=lambda _: None)
path = advertise(host, host.start())
host.agent_answers[9001] = {"exec": {sys.argv[2]: {"exited": False}}}
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
while not done.wait(0.02):
    vm = host.pve.vm(9001)
    if vm is not None and any(c == "exec" and "docker.sh" in " ".join(a.get("command") or ())
                              for c, a in list(vm.agent_requests)):
        (state / "agent-held").touch()
    if (state / "agent-release").exists():
        host.agent_answers.clear()
path.unlink()
host.stop()
"""


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_cold_build_interrupted_mid_agent_exec_converges_in_one_rerun(tmp_path: Path, sig: signal.Signals):
    """9001's docker feature never ends in the guest (the agent's exec-status says it still runs); the host is served
    by a simulator of its own, so that, as on a real node, the guest goes on when the run is interrupted."""
    from phoenix.pve.client import Pve
    from phoenix.sim.host import served

    root = copy_project(tmp_path / "phoenix", vms=True)
    state = root / ".cache" / "sim"
    server = subprocess.Popen([sys.executable, "-c", HOLDING_SERVER, str(state), DOCKER_FEATURE], cwd=REPO,
                              env=env())
    try:
        deadline = time.monotonic() + 30
        while served(state) is None:
            assert server.poll() is None and time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
        found = served(state)
        assert found is not None
        rc, out = interrupted(root, COLD, sig, (state / "agent-held").exists, "9001's docker feature", "")
        after_the_interrupt(rc, out, sig)
        tags = Pve.of(found[0]).get("nodes/pve1/qemu/9001/config").get("tags")
        assert "phx-building" in str(tags)  # not recorded as built
        (state / "agent-release").touch()  # the next build of 9001 is a new VM, whose script ends
        converges(root, COLD)
    finally:
        server.terminate()
        server.wait(30)
    as_built(*on_host(root), root)


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the archives of 9000 and 9001, exported from a host built without interruption."""
    root = copy_project(tmp_path_factory.mktemp("exported") / "phoenix", vms=True)
    store = root.parent / "artifacts"
    assert doit(root, "vm9001").returncode == 0
    exported = doit(root, "export", "vm9001", PHOENIX_ARTIFACTS=str(store))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert len(list(store.glob("*.json"))) == 2
    return store


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_cold_build_interrupted_mid_artifact_restore_converges_in_one_rerun(tmp_path: Path, archives: Path,
                                                                             sig: signal.Signals):
    root = copy_project(tmp_path / "phoenix", vms=True)
    store = {"PHOENIX_ARTIFACTS": str(archives)}
    rc, out = interrupted(root, COLD, sig, locked(root, 9000, "create"), "the restore of 9000", "create=3000", **store)
    after_the_interrupt(rc, out, sig)
    vms, owners = on_host(root)
    assert 9000 not in vms and 9000 not in owners
    rerun = doit(root, COLD, **store)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    outcomes = {k: v["outcome"] for k, v in json.loads((root / ".cache" / "last-run.json").read_text())["tasks"].items()}
    assert outcomes["vm9000"] == "restored" and outcomes["vm9001"] == "restored" and outcomes["vm1002"] == "built"
    converges(root, COLD)
    as_built(*on_host(root), root)
    dump = root / ".cache" / "sim" / "node-fs" / "var" / "lib" / "vz" / "dump"
    assert not dump.is_dir() or not list(dump.iterdir()), "archive copies left on the node"
    assert sorted(p.name for p in archives.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_an_export_interrupted_mid_dump_converges_in_one_rerun(golden: Path, tmp_path: Path, sig: signal.Signals):
    """(SIGKILL mid-dump leaves vzdump's lock, as a crashed node does: see the unlock test above.)"""
    from phoenix.artifacts.store import Store as Artifacts

    store = tmp_path / "artifacts"
    rc, out = interrupted(golden, "export vm9001", sig, locked(golden, 9000, "backup"), "the dump of 9000",
                          "vzdump=3000", PHOENIX_ARTIFACTS=str(store))
    after_the_interrupt(rc, out, sig)
    assert not store.exists() or not list(store.iterdir())  # no archive, no manifest, no partial file
    vms, _ = on_host(golden)
    assert "lock" not in vms[9000]  # vzdump's lock went with its failed task
    again = doit(golden, "export", "vm9001", PHOENIX_ARTIFACTS=str(store))
    assert again.returncode == 0, again.stdout + again.stderr
    found = Artifacts(store)
    manifests = list(found.manifests())
    assert sorted(m.layer for m in manifests) == ["vm9000", "vm9001"]
    assert all(found.find(m.identity) == m for m in manifests)  # whole: size and sha256 match
    assert "nothing to do" in doit(golden, "vm9001").stdout


# ---------------------------------------------------------------------------------- two runs at once

HOST_PARTS = {"repos": {"no_subscription": True}, "network": {"bridges": [{"name": "vmbr1", "vlan_aware": True}]}}


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example estate with its stacks, synced (ct900, ct902, ct910, the Portainer server and environment, both
    stacks), and host parts declared but not set up yet. Each test works on a copy."""
    from .test_phoenix_cli import phoenix

    root = copy_project(tmp_path_factory.mktemp("synced") / "phoenix", stacks=True)
    done = phoenix(root, "sync", "portainer")
    assert done.returncode == 0, done.stdout + done.stderr
    path = root / "etc" / "phoenix_hypervisor_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "host": HOST_PARTS}))
    return root


def what_the_host_holds(root: Path) -> tuple[dict[Any, Any], str]:
    """The simulated host's records (guests, storages, pools, the node) and the Portainer stand-in's state."""
    records = Store(root / ".cache" / "sim", lambda _: None).read()
    portainer = root / ".cache" / "sim" / "portainer-state.json"
    return records, portainer.read_text() if portainer.exists() else ""


def lease_of(root: Path, holder: Any) -> None:
    from phoenix import lease as L

    from .test_phoenix_cli import on_the_host

    def put(pve: Any) -> None:
        pve.pools[L.POOL] = set()
        pve.pool_info[L.POOL] = {"comment": L.comment(holder), "storage": set()}
    on_the_host(root, put)


def dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def verb_command(root: Path, verb: str) -> subprocess.CompletedProcess:
    """One command that writes, as an operator would run it: each needs the host's lease."""
    from .test_phoenix_cli import phoenix

    if verb == "doit":
        return doit(root, "ct901")  # not built yet
    if verb == "setup-hypervisor":
        return phoenix(root, "setup-hypervisor")  # the declared host parts
    if verb == "sync":
        compose = root / "stacks" / "qdrant" / "docker-compose.yml"
        compose.write_text(compose.read_text() + "# changed: the stack is deployed again\n")
        return phoenix(root, "sync", "stack", "qdrant_service", "to", "910")  # a Portainer-only change
    assert verb == "delete"
    return phoenix(root, "delete", "910", "--yes")


VERBS = ["doit", "setup-hypervisor", "sync", "delete"]


@pytest.mark.parametrize("verb", VERBS)
def test_a_second_run_of_any_verb_is_refused_before_any_write_naming_the_holder(synced: Path, tmp_path: Path,
                                                                                verb: str):
    import shutil

    from phoenix import lease as L

    root = tmp_path / "phoenix"
    shutil.copytree(synced, root, symlinks=True)
    now = int(time.time())
    holder = L.Holder("feed0001", "ci-runner-7", 4242, 1, now - 30, now + 600)
    lease_of(root, holder)
    before = what_the_host_holds(root)
    refused = verb_command(root, verb)
    said = refused.stdout + refused.stderr
    assert refused.returncode == 1, said
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now - 30))
    assert f"another Phoenix run is changing this host: run feed0001 on ci-runner-7, pid 4242, since {since}" in said
    assert "Nothing was changed" in said and "Traceback" not in said
    assert what_the_host_holds(root) == before  # not one write: guests, storages, node, pools and Portainer as they were


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("left", ["killed here", "expired elsewhere"])
def test_a_lease_left_by_a_killed_run_is_taken_over_by_any_verb(synced: Path, tmp_path: Path, verb: str, left: str):
    import shutil
    import socket

    from phoenix import lease as L

    root = tmp_path / "phoenix"
    shutil.copytree(synced, root, symlinks=True)
    now = int(time.time())
    if left == "killed here":  # a run of this machine killed with SIGKILL: its process is gone, its lease not expired
        pid = dead_pid()
        holder, why = L.Holder("dead0001", socket.gethostname(), pid, 1, now - 30, now + 600), f"process {pid} is gone"
    else:  # a run elsewhere that stopped renewing (its machine was lost)
        holder, why = L.Holder("dead0001", "lost-runner", 4242, 1, now - 300, now - 60), "its lease expired"
    lease_of(root, holder)
    before = what_the_host_holds(root)
    done = verb_command(root, verb)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert f"phoenix: breaking the host's lease of run dead0001 on {holder.host} ({why})" in said, said
    records, portainer = what_the_host_holds(root)
    assert ("pool", L.POOL) not in records  # released at the end
    changed = {k for k in {*records, *before[0]} if records.get(k) != before[0].get(k)} - {("pool", L.POOL)}
    assert changed or portainer != before[1], "the verb did its work"
    if verb == "sync":
        assert portainer != before[1]  # the stack deployed again
    if verb == "delete":
        assert ("ct", "910") in changed and ("ct", "910") not in records


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_the_clone_it_started_on_a_node_that_outlives_the_run(golden: Path, sig: signal.Signals):
    """On a node that goes on when the run ends (the simulator served by its own process), Ctrl-C or SIGTERM stops
    the Proxmox task the run started (PVE's "stop a task", as `qm`'s own Ctrl-C does): the clone fails "interrupted
    by signal", its half-made VM is removed, nothing runs on; so the rerun right after is not refused, and converges."""

    state = golden / ".cache" / "sim"
    server, endpoint = slow_clones(state)
    try:
        rc, out = interrupted(golden, "vm1002", sig, lambda: clone_running(endpoint), "the clone", "")
        after_the_interrupt(rc, out, sig)
        assert re.search(r"^phoenix: stopped the Proxmox task this run started \(POST /nodes/pve1/qemu/9001/clone: "
                         r"UPID:pve1:[^)]*\)$", out, re.M), out
        assert not clone_running(endpoint)
        from phoenix.pve.client import Pve

        pve = Pve.of(endpoint)
        assert 1002 not in {int(v["vmid"]) for v in pve.get("nodes/pve1/qemu")}  # the half-made clone is gone
        (task,) = [t for t in pve.get("nodes/pve1/tasks") if t.get("type") == "qmclone"]
        assert task["status"] == "interrupted by signal" and task.get("endtime"), task  # PVE lists an end's status
        server = at_usual_speed(server, state)
        converges(golden, "vm1002")
    finally:
        server.terminate()
        server.wait(30)
