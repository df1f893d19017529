"""A real `doit` process killed (SIGKILL) at the Portainer points (the stand-in holds its answer: the work is done on
Portainer, the run dies waiting for the reply): one rerun converges with no duplicate environment or stack, and the
next run is a no-op of 1 Proxmox and 1 Portainer request. Against a served simulator, as two runs share a node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phoenix.sim.host import spawn
from phoenix.sim.portainer import FAULTS_FILE
from tests.core.conftest import REPO, copy_project, doit_command

AGENT_URL = "tcp://10.0.0.130:9001"


def env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}, "PYTHONPATH": str(REPO)}


def add_docker_guest(root: Path) -> None:
    path = root / "etc" / "phoenix_lxc_configs.json"
    data = json.loads(path.read_text())
    guest = json.loads(json.dumps(data["lxc_configs"]["910"]))
    for key in ("application_script", "app", "mount_points", "mac_address"):
        guest.pop(key, None)
    guest.update({"name": "qdrant-db", "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": "10.0.0.130/24",
                                                          "gw": "10.0.0.1"},
                  "docker_stacks": [{"name": "qdrant_service", "environment": "production"}]})
    data["lxc_configs"]["930"] = guest
    path.write_text(json.dumps(data, indent=2))


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """The example estate with its stacks, deployed on a served simulator; then a guest 930 with a stack is added."""
    root = copy_project(tmp_path / "phoenix", stacks=True)
    proc = spawn(root / ".cache" / "sim", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first = doit_command(root)
        assert first.returncode == 0, first.stdout + first.stderr
        add_docker_guest(root)
        yield root
    finally:
        proc.terminate()
        proc.wait(30)


def portainer_state(root: Path) -> dict:
    return json.loads((root / ".cache" / "sim" / "portainer-state.json").read_text())


def killed_when(root: Path, fault: dict, done: Callable[[dict], bool]) -> str:
    """Run doit with the fault in place; SIGKILL it once Portainer's state shows done(state); the fault is then
    lifted. Returns what the killed run printed."""
    faults = root / ".cache" / "sim" / FAULTS_FILE
    faults.write_text(json.dumps([fault]))
    run = subprocess.Popen([sys.executable, "-m", "doit"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env=env())
    try:
        deadline = time.monotonic() + 240
        while not done(portainer_state(root)):
            assert run.poll() is None, run.communicate()[0]
            assert time.monotonic() < deadline, "the run never reached the point"
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        out, _ = run.communicate(timeout=30)
    finally:
        faults.unlink(missing_ok=True)
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == -signal.SIGKILL
    return out


def converges(root: Path) -> None:
    again = doit_command(root)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    # a rerun that writes breaks the killed run's lease at once (its process is gone); one with nothing to write
    # never takes it
    assert "breaking the host's lease" in out or "nothing to do" in out, out
    state = portainer_state(root)
    agents = [e for e in state["endpoints"] if e["URL"] == AGENT_URL]
    assert len(agents) == 1, state["endpoints"]
    assert [s["Name"] for s in state["stacks"] if s["EndpointId"] == agents[0]["Id"]] == ["qdrant_service"]
    assert len(state["stacks"]) == 3  # two on 910, one on 930: none twice
    noop = doit_command(root)
    assert "nothing to do" in noop.stdout, noop.stdout + noop.stderr
    run = json.loads((root / ".cache" / "last-run.json").read_text())
    assert (run["api_requests"], run["portainer_requests"]) == (1, 1), run


def test_a_run_killed_mid_registration_converges_in_one_rerun(project: Path) -> None:
    out = killed_when(project, {"method": "POST", "path": "^/api/endpoints$", "delay": 120, "when": "after"},
                      lambda s: any(e["URL"] == AGENT_URL for e in s["endpoints"]))
    assert "register ct930" in out or "portainer:env@930" in out, out
    converges(project)


def test_a_run_killed_mid_stack_deploy_converges_in_one_rerun(project: Path) -> None:
    def deployed_on_930(state: dict) -> bool:
        agent = next((e["Id"] for e in state["endpoints"] if e["URL"] == AGENT_URL), None)
        return any(s["EndpointId"] == agent for s in state["stacks"])

    out = killed_when(project, {"method": "POST", "path": "^/api/stacks/create", "delay": 120, "when": "after"},
                      deployed_on_930)
    assert "stack:qdrant_service@930" in out, out
    converges(project)


def test_a_run_killed_mid_redeploy_converges_in_one_rerun(project: Path) -> None:
    assert doit_command(project).returncode == 0
    compose = project / "stacks" / "qdrant" / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("v1.15.5", "v1.15.4"))
    out = killed_when(project, {"method": "PUT", "path": "^/api/stacks/", "delay": 120, "when": "after"},
                      lambda s: any("v1.15.4" in st["content"] for st in s["stacks"]))
    assert "stack:qdrant_service@910 rebuild: compose file changed" in out, out
    converges(project)
    assert all("v1.15.4" in s["content"] for s in portainer_state(project)["stacks"] if s["Name"] == "qdrant_service")


HOLD = """
import sys, time
from pathlib import Path
from phoenix.lease import Lease
from phoenix.pve.client import Pve
from phoenix.sim.served import served
endpoint, _ = served(Path(sys.argv[1]))
lease = Lease(lambda: Pve.of(endpoint), "holder1", print)
lease.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_sync_stack_while_another_run_holds_the_host_is_refused_before_any_write(project: Path) -> None:
    compose = project / "stacks" / "qdrant" / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("v1.15.5", "v1.15.4"))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(project / ".cache" / "sim")], cwd=REPO, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = portainer_state(project)
        sync = subprocess.run([sys.executable, "-m", "phoenix", "--project", str(project), "sync", "stack",
                               "qdrant_service", "to", "910"], capture_output=True, text=True, timeout=300, env=env())
        out = sync.stdout + sync.stderr
        assert sync.returncode == 1, out
        assert "Traceback" not in out
        assert f"another Phoenix run is changing this host: run holder1 on {os.uname().nodename}, pid {holder.pid}" \
            in out, out
        assert portainer_state(project) == before  # no write reached Portainer
    finally:
        holder.kill()
        holder.wait()
