"""The environment layer on the simulated host with the Portainer stand-in: deploy, no-op, incremental redeploys,
hand-made changes, files and secrets."""

from __future__ import annotations

import json
import os
import re
import stat

import jsonschema
import yaml

from phoenix.portainer.record import MARK, decode
from tests.core.conftest import Checkout, doit_command

from .conftest import SCHEMA

STACKS = ("stack:qdrant_service@910", "stack:thinkheads_ai_app@910")


def standin(co: Checkout):
    return co.sim.portainer_standin


def stacks_by_name(co: Checkout) -> dict[str, dict]:
    return {s["Name"]: s for s in standin(co).state["stacks"]}


def env_of(stack: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in stack["Env"]}


def portainer_writes(co: Checkout, since: int) -> list[tuple[str, str]]:
    return [(m, p) for m, p in standin(co).requests[since:] if m != "GET"]


def edit_stacks_config(co: Checkout, change) -> None:
    path = co.root / "etc" / "phoenix_stacks_config.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def test_first_run_deploys_every_stack_and_a_second_run_is_one_plus_one_requests(deployed: Checkout) -> None:
    found = stacks_by_name(deployed)
    assert set(found) == {"qdrant_service", "thinkheads_ai_app"}
    endpoint = standin(deployed).state["endpoints"]
    assert [(e["Type"], e["URL"]) for e in endpoint] == [(1, "unix:///var/run/docker.sock")]
    for stack in found.values():
        record = decode(env_of(stack)[MARK])
        assert record is not None and record["guest"] == 910 and record["env"]["endpoint"] == endpoint[0]["Id"]
    token = deployed.root / "etc" / "phoenix_portainer_token.conf"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text().startswith("ptr_")

    mark = len(standin(deployed).requests)
    again = deployed.doit()
    assert again.rc == 0, again.output
    run = again.last_run
    assert run["api_requests"] == 1 and run["portainer_requests"] == 1, run
    assert standin(deployed).requests[mark:] == [("GET", "/api/stacks")]
    assert {k: again.outcomes()[k] for k in STACKS} == {k: "up-to-date" for k in STACKS}


def test_a_compose_edit_redeploys_only_that_stack_and_plan_says_why(deployed: Checkout) -> None:
    compose = deployed.root / "stacks" / "qdrant" / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("v1.15.5", "v1.15.4"))
    plan = deployed.doit("plan")
    assert plan.rc == 0, plan.output
    changing = [line for line in plan.output.splitlines() if line.startswith(("ct", "portainer:", "stack:"))
                and "up-to-date" not in line]
    assert changing == ["stack:qdrant_service@910     rebuild: compose file changed"], plan.output
    mark = len(standin(deployed).requests)
    result = deployed.doit()
    assert result.rc == 0, result.output
    qdrant = stacks_by_name(deployed)["qdrant_service"]
    assert portainer_writes(deployed, mark) == [("PUT", f"/api/stacks/{qdrant['Id']}?endpointId={qdrant['EndpointId']}")]
    assert "qdrant/qdrant:v1.15.4" in qdrant["content"]
    assert result.outcomes()["stack:qdrant_service@910"] == "built"
    assert result.outcomes()["stack:thinkheads_ai_app@910"] == "up-to-date"


def test_a_variable_edit_redeploys_only_the_stacks_of_that_environment(deployed: Checkout) -> None:
    def port(data: dict) -> None:
        data["docker_stacks"]["thinkheads_ai_app"]["environments"]["development"]["variables"][2]["value"] = "8003"

    edit_stacks_config(deployed, port)
    plan = deployed.doit("plan")
    assert "stack:thinkheads_ai_app@910  rebuild: variable API_PORT changed" in plan.output
    assert "stack:qdrant_service@910     up-to-date" in plan.output
    result = deployed.doit()
    assert result.rc == 0, result.output
    assert env_of(stacks_by_name(deployed)["thinkheads_ai_app"])["API_PORT"] == "8003"
    assert result.outcomes()["stack:qdrant_service@910"] == "up-to-date"


def test_an_unused_environment_changes_nothing(deployed: Checkout) -> None:
    def port(data: dict) -> None:
        data["docker_stacks"]["thinkheads_ai_app"]["environments"]["testing"]["variables"][2]["value"] = "9001"

    edit_stacks_config(deployed, port)
    mark = len(standin(deployed).requests)
    result = deployed.doit()
    assert result.rc == 0, result.output
    assert portainer_writes(deployed, mark) == []


def test_a_stack_removed_by_hand_is_deployed_again(deployed: Checkout) -> None:
    qdrant = stacks_by_name(deployed)["qdrant_service"]
    standin(deployed).state["stacks"].remove(qdrant)
    plan = deployed.doit("plan")
    assert "stack:qdrant_service@910     build: not deployed" in plan.output
    result = deployed.doit()
    assert result.rc == 0, result.output
    assert "qdrant_service" in stacks_by_name(deployed)
    assert result.outcomes()["stack:thinkheads_ai_app@910"] == "up-to-date"


def test_a_stack_of_the_same_name_that_phoenix_did_not_deploy_is_refused_not_overwritten(deployed: Checkout) -> None:
    qdrant = stacks_by_name(deployed)["qdrant_service"]
    qdrant["Env"] = [{"name": "FROM", "value": "hand"}]
    qdrant["content"] = "services:\n  mine:\n    image: busybox\n"
    compose = deployed.root / "stacks" / "qdrant" / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("v1.15.5", "v1.15.4"))
    plan = deployed.doit("plan")
    assert "stack:qdrant_service@910     blocked: deployed by hand, not Phoenix's: refused" in plan.output
    mark = len(standin(deployed).requests)
    result = deployed.doit()
    assert result.rc != 0
    assert "deployed by hand, not Phoenix's: refused" in result.output and "Traceback" not in result.output
    assert portainer_writes(deployed, mark) == []
    assert stacks_by_name(deployed)["qdrant_service"]["content"] == "services:\n  mine:\n    image: busybox\n"


def test_a_fresh_checkout_against_a_deployed_estate_redeploys_nothing(deployed: Checkout) -> None:
    import shutil

    token = deployed.root / "etc" / "phoenix_portainer_token.conf"
    token.unlink()
    for name in ("model.json", "last-run.json", "forced.json"):
        (deployed.cache / name).unlink(missing_ok=True)
    shutil.rmtree(deployed.cache / "logs", ignore_errors=True)
    mark = len(standin(deployed).requests)
    result = deployed.doit()
    assert result.rc == 0, result.output
    assert result.outcomes()["portainer:server"] == "built"  # a new API token: the old file is gone
    assert {k: result.outcomes()[k] for k in (*STACKS, "portainer:env@910")} == \
        {k: "up-to-date" for k in (*STACKS, "portainer:env@910")}
    writes = portainer_writes(deployed, mark)
    assert [p for _, p in writes] == ["/api/auth", "/api/users/1/tokens"], writes


def test_files_reach_the_container_as_inline_configs_at_their_destination(deployed: Checkout) -> None:
    app = stacks_by_name(deployed)["thinkheads_ai_app"]
    data = yaml.safe_load(app["content"])
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(data)
    (config,) = data["configs"].values()
    assert config["content"] == (deployed.root / "stacks" / "thinkheads_ai" / "configs" / "dev.env").read_text()
    assert {"source": next(iter(data["configs"])), "target": "/app/.env"} in data["services"]["app"]["configs"]
    # the stack without files is sent as written
    qdrant = stacks_by_name(deployed)["qdrant_service"]
    assert qdrant["content"] == (deployed.root / "stacks" / "qdrant" / "docker-compose.yml").read_text()


def test_a_secret_from_a_value_file_reaches_portainer_only(checkout: Checkout) -> None:
    secret = "s3cr3t-value-of-the-dev-database"
    path = checkout.root / "etc" / "dev_db_password.conf"
    path.write_text(secret + "\n")
    os.chmod(path, 0o600)

    def use_file(data: dict) -> None:
        variables = data["docker_stacks"]["thinkheads_ai_app"]["environments"]["development"]["variables"]
        variables[1] = {"name": "DATABASE_PASS", "value_file": "dev_db_password.conf"}

    edit_stacks_config(checkout, use_file)
    result = checkout.doit()
    assert result.rc == 0, result.output
    app = stacks_by_name(checkout)["thinkheads_ai_app"]
    env = env_of(app)
    assert env["DATABASE_PASS"] == secret
    assert secret not in env[MARK] and secret not in json.dumps(decode(env[MARK]))
    # "nothing else: not the output, not .cache/" (the stand-in's own state plays Portainer's database)
    for where in (result.output, *(p.read_text(errors="replace") for p in checkout.cache.rglob("*")
                                   if p.is_file() and p.name != "portainer-state.json")):
        assert secret not in where
    # a new value in the file redeploys the stack that uses it
    path.write_text("another-value-entirely\n")
    plan = checkout.doit("plan")
    assert "stack:thinkheads_ai_app@910  rebuild: variable DATABASE_PASS changed" in plan.output


def test_a_loose_value_file_is_a_config_error_naming_the_file_and_the_fix(checkout: Checkout) -> None:
    path = checkout.root / "etc" / "dev_db_password.conf"
    path.write_text("x\n")
    os.chmod(path, 0o644)

    def use_file(data: dict) -> None:
        variables = data["docker_stacks"]["thinkheads_ai_app"]["environments"]["development"]["variables"]
        variables[1] = {"name": "DATABASE_PASS", "value_file": "dev_db_password.conf"}

    edit_stacks_config(checkout, use_file)
    result = doit_command(checkout.root)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert ('docker_stacks.thinkheads_ai_app.environments.development.variables[1].value_file' in out
            and f"chmod 600 {path}" in out and "nothing on the host was touched" in out), out
    assert not (checkout.cache / "sim").exists()  # no simulated host was even started


def test_a_rebuilt_guest_redeploys_its_stacks(deployed: Checkout) -> None:
    result = deployed.doit("forget", "ct910")
    assert result.rc == 0, result.output
    plan = deployed.doit("plan")
    assert "stack:qdrant_service@910     follows (parent portainer:env@910 rebuilds): ct910 forced by doit forget" \
        in plan.output, plan.output
    again = deployed.doit()
    assert again.rc == 0, again.output
    assert {k: again.outcomes()[k] for k in STACKS} == {k: "built" for k in STACKS}
    assert len(stacks_by_name(deployed)) == 2  # updated in place, not duplicated



def add_docker_guest(co: Checkout, ctid: int = 930, stacks: list | None = None) -> None:
    data = co.lxc_config()
    guest = json.loads(json.dumps(data["lxc_configs"]["910"]))
    for key in ("application_script", "app", "mount_points", "mac_address"):
        guest.pop(key, None)
    guest.update({"name": "qdrant-db", "network_config": {"name": "eth0", "bridge": "vmbr0", "ip": f"10.0.0.{ctid - 800}/24",
                                                          "gw": "10.0.0.1"},
                  "docker_stacks": stacks or [{"name": "qdrant_service", "environment": "production"}]})
    data["lxc_configs"][str(ctid)] = guest
    co.write_lxc_config(data)


def test_another_docker_guest_gets_the_agent_and_is_registered_once(checkout: Checkout) -> None:
    add_docker_guest(checkout)
    result = checkout.doit()
    assert result.rc == 0, result.output
    agents = [e for e in standin(checkout).state["endpoints"] if e["Type"] == 2]
    assert [(e["Name"], e["URL"]) for e in agents] == [("qdrant-db", "tcp://10.0.0.130:9001")]
    runs = [json.loads(line) for line in (checkout.cache / "sim" / "runs.jsonl").read_text().splitlines()]
    assert [r.get("ctid") for r in runs if r.get("name") == "portainer_agent.sh"] == [930]
    on_930 = [s for s in standin(checkout).state["stacks"] if s["EndpointId"] == agents[0]["Id"]]
    assert [s["Name"] for s in on_930] == ["qdrant_service"]  # the same stack on two guests: one on each environment
    again = checkout.doit()
    assert again.rc == 0 and again.last_run["portainer_requests"] == 1, again.output
    assert again.outcomes()["portainer:env@930"] == "up-to-date"


def test_sync_verbs_run_the_environment_layer(deployed: Checkout) -> None:
    import subprocess
    import sys

    from tests.core.conftest import REPO

    def phoenix(*args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
        return subprocess.run([sys.executable, "-m", "phoenix", "--project", str(deployed.root), *args],
                              capture_output=True, text=True, timeout=300, env={**env, "PYTHONPATH": str(REPO)})

    deployed.stop_sim()
    compose = deployed.root / "stacks" / "qdrant" / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("v1.15.5", "v1.15.4"))
    one = phoenix("sync", "stack", "qdrant_service", "to", "910")
    assert one.returncode == 0, one.stdout + one.stderr
    assert "stack:qdrant_service@910 redeploy stack qdrant_service (production)" in one.stdout
    whole = phoenix("sync", "portainer")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert "0 built, 0 updated, 7 up-to-date" in whole.stdout  # the stacks, their environment, server, guests
    unknown = phoenix("sync", "stack", "nope", "to", "910")
    assert unknown.returncode == 2 and "no stack 'nope' on ct910" in unknown.stdout + unknown.stderr


def test_a_stack_no_guest_lists_is_removed_only_when_the_run_is_told_to_prune(deployed: Checkout, monkeypatch) -> None:
    data = deployed.lxc_config()
    data["lxc_configs"]["910"]["docker_stacks"] = [{"name": "qdrant_service", "environment": "production"}]
    deployed.write_lxc_config(data)
    mark = len(standin(deployed).requests)
    kept = deployed.doit()
    assert kept.rc == 0, kept.output
    assert portainer_writes(deployed, mark) == [] and "thinkheads_ai_app" in stacks_by_name(deployed)

    monkeypatch.setenv("PHOENIX_PRUNE_STACKS", "1")
    plan = deployed.doit("plan")
    assert ("portainer:server          update: remove stack thinkheads_ai_app of CT 910: no guest lists it "
            "(PHOENIX_PRUNE_STACKS)") in plan.output, plan.output
    app = stacks_by_name(deployed)["thinkheads_ai_app"]
    pruned = deployed.doit()
    assert pruned.rc == 0, pruned.output
    assert portainer_writes(deployed, mark) == [("DELETE", f"/api/stacks/{app['Id']}?endpointId={app['EndpointId']}")]
    assert set(stacks_by_name(deployed)) == {"qdrant_service"}
    assert deployed.doit().last_run["portainer_requests"] == 1


def test_a_noop_with_stacks_imports_no_http_client_and_no_config_models(tmp_path) -> None:
    """The Portainer listing is the standard library's GET too: a no-op imports no requests, YAML or pydantic."""
    import subprocess
    import sys

    from tests.core.test_sim import serve, stop

    co = Checkout(tmp_path / "phoenix", stacks=True)
    proc = serve(co.cache / "sim")
    try:
        assert co.doit(own_sim=False).rc == 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "doit", "-n", "2"], cwd=co.root, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        stop(proc)
    assert done.returncode == 0 and "nothing to do" in done.stdout, done.stdout + done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert {"phoenix.portainer.listing", "phoenix.tlsget"} <= imported
    heavy = {"pydantic", "yaml", "jinja2", "requests", "urllib3", "proxmoxer", "aiohttp", "phoenix.config.estate",
             "phoenix.portainer.client", "phoenix.builder", "phoenix.steps"}  # steps: a build's, 10 ms of dataclasses
    assert not heavy & imported, sorted(heavy & imported)


def test_images_are_pulled_again_only_when_asked(deployed: Checkout, monkeypatch) -> None:
    compose = deployed.root / "stacks" / "qdrant" / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("v1.15.5", "v1.15.4"))
    assert deployed.doit().rc == 0
    assert stacks_by_name(deployed)["qdrant_service"]["pulled"] is False
    compose.write_text(compose.read_text().replace("v1.15.4", "v1.15.5"))
    monkeypatch.setenv("PHOENIX_PULL_IMAGES", "1")
    assert deployed.doit().rc == 0
    assert stacks_by_name(deployed)["qdrant_service"]["pulled"] is True


def test_status_shows_the_environment_layer(deployed: Checkout) -> None:
    from phoenix.cli.main import main

    deployed.stop_sim()
    import io

    out = io.StringIO()
    assert main(["--project", str(deployed.root), "status", "--json"], out=out) == 0
    rows = {r["task"]: r for r in json.loads(out.getvalue())}
    for key in ("portainer:server", "portainer:env@910", *STACKS):
        assert rows[key]["state"] == "present" and rows[key]["up_to_date"] is True, rows[key]
    assert rows["ct910"]["state"] == "running"


def test_stacks_on_a_vm_go_through_its_agent_environment(tmp_path) -> None:
    """Seed 002's example: qdrant_service and thinkheads_ai_app on VM 1002, whose Portainer agent is started through
    the guest agent and registered at the VM's address; a rebuilt VM redeploys its stacks."""
    from tests.core.conftest import audit

    co = Checkout(tmp_path / "phoenix", stacks=True, vms=True)
    try:
        first = co.doit()
        assert first.rc == 0, first.output
        agents = [e for e in standin(co).state["endpoints"] if e["Type"] == 2]
        assert [(e["Name"], e["URL"]) for e in agents] == [("qdrant-db", "tcp://10.0.0.102:9001")]
        on_vm = sorted(s["Name"] for s in standin(co).state["stacks"] if s["EndpointId"] == agents[0]["Id"])
        assert on_vm == ["qdrant_service", "thinkheads_ai_app"]
        execs = [p for m, p, _ in co.pve.requests if m == "POST" and p.endswith("/qemu/1002/agent/exec")]
        assert execs, "the agent script runs through the guest agent"
        again = co.doit()
        assert again.rc == 0 and again.last_run["portainer_requests"] == 1 and again.last_run["api_requests"] == 1
        assert co.doit("forget", "vm1002").rc == 0
        plan = co.doit("plan")
        assert "stack:qdrant_service@1002     follows (parent portainer:env@1002 rebuilds): vm1002 forced by doit " \
               "forget" in plan.output, plan.output
        rebuilt = co.doit()
        assert rebuilt.rc == 0, rebuilt.output
        assert rebuilt.outcomes()["stack:qdrant_service@1002"] == "built"
        assert rebuilt.outcomes()["stack:qdrant_service@910"] == "up-to-date"
        assert len([e for e in standin(co).state["endpoints"] if e["Type"] == 2]) == 1  # found again, not duplicated
        audit(co)
    finally:
        co.stop_sim()


def test_the_first_run_makes_the_admin_then_a_key_and_a_refused_key_is_made_again(checkout: Checkout) -> None:
    # the README: "the first time: the admin is made with secrets.portainer_password_file if the server has none,
    # Phoenix logs in and creates an API key"; portainer:server is built again when "the server refuses it"
    first = checkout.doit()
    assert first.rc == 0, first.output
    writes = [p for m, p in standin(checkout).requests if m == "POST" and p.startswith(("/api/users", "/api/auth"))]
    assert writes == ["/api/users/admin/init", "/api/auth", "/api/users/1/tokens"], writes
    token = checkout.root / "etc" / "phoenix_portainer_token.conf"
    token.write_text("ptr_" + "0" * 43 + "\n")  # a key the server does not know (revoked, or another server's)
    plan = checkout.doit("plan")
    assert re.search(r"portainer:server\s+rebuild: the server refused Phoenix's API token", plan.output), plan.output
    mark = len(standin(checkout).requests)
    again = checkout.doit()
    assert again.rc == 0 and again.outcomes()["portainer:server"] == "built", again.output
    assert [p for _, p in portainer_writes(checkout, mark)] == ["/api/auth", "/api/users/1/tokens"]  # no second admin
    assert token.read_text().strip() != "ptr_" + "0" * 43 and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert {k: again.outcomes()[k] for k in STACKS} == {k: "up-to-date" for k in STACKS}
    assert checkout.doit().last_run["portainer_requests"] == 1


def test_a_dollar_in_a_file_is_doubled_and_a_file_edit_redeploys_the_stack_that_mounts_it(deployed: Checkout) -> None:
    # the README: "`$` in a file is doubled so Compose does not interpolate it"; a stack is rebuilt when "its
    # environment's ... files ... changed"
    env_file = deployed.root / "stacks" / "thinkheads_ai" / "configs" / "dev.env"
    text = "APP_ENV=development\nPASSWORD=pa$$word-${HOME}-$USER\n"
    env_file.write_text(text)
    plan = deployed.doit("plan")
    assert re.search(r"stack:thinkheads_ai_app@910\s+rebuild: file /app/.env changed", plan.output), plan.output
    assert re.search(r"stack:qdrant_service@910\s+up-to-date", plan.output), plan.output
    assert deployed.doit().rc == 0
    data = yaml.safe_load(stacks_by_name(deployed)["thinkheads_ai_app"]["content"])
    (config,) = data["configs"].values()
    assert config["content"] == "APP_ENV=development\nPASSWORD=pa$$$$word-$${HOME}-$$USER\n"


def test_an_agent_script_edit_rebuilds_the_agent_environments_only_and_finds_them_again(checkout: Checkout) -> None:
    # the README: portainer:env@ID is built when "the agent script or settings changed"; "an environment that exists
    # (same URL) is found, not duplicated"
    add_docker_guest(checkout)
    assert checkout.doit().rc == 0
    script = checkout.root / "images" / "apps" / "portainer_agent.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    plan = checkout.doit("plan")
    assert re.search(r"portainer:env@930\s+rebuild: build inputs changed", plan.output), plan.output
    assert re.search(r"portainer:env@910\s+up-to-date", plan.output), plan.output
    mark = len(standin(checkout).requests)
    result = checkout.doit()
    assert result.rc == 0, result.output
    changed = {k for k, v in result.outcomes().items() if v != "up-to-date"}
    assert changed == {"portainer:env@930", "stack:qdrant_service@930"}, result.output
    runs = [json.loads(line) for line in (checkout.cache / "sim" / "runs.jsonl").read_text().splitlines()]
    assert [r.get("ctid") for r in runs if r.get("name") == "portainer_agent.sh"] == [930, 930]
    assert ("POST", "/api/endpoints") not in portainer_writes(checkout, mark)
    assert len([e for e in standin(checkout).state["endpoints"] if e["Type"] == 2]) == 1


def test_phoenix_uses_only_the_portainer_routes_the_readme_lists(checkout: Checkout, monkeypatch) -> None:
    """A real Portainer must answer every route Phoenix uses: the README lists them; a deploy, a redeploy, a second
    guest through an agent and a prune use them all."""
    from tests.core.conftest import REPO

    readme = (REPO / "README.md").read_text().split("Phoenix uses these routes:", 1)[1].split(".\n", 1)[0]
    listed = set()
    for methods, path in re.findall(r"`([A-Z|]+) (/api/[^`]+)`", readme):
        listed |= {(m, path) for m in methods.split("|")}
    add_docker_guest(checkout)
    assert checkout.doit().rc == 0
    compose = checkout.root / "stacks" / "qdrant" / "docker-compose.yml"
    compose.write_text(compose.read_text() + "# changed\n")
    assert checkout.doit().rc == 0
    data = checkout.lxc_config()
    data["lxc_configs"]["910"]["docker_stacks"] = data["lxc_configs"]["910"]["docker_stacks"][:1]
    checkout.write_lxc_config(data)
    monkeypatch.setenv("PHOENIX_PRUNE_STACKS", "1")
    assert checkout.doit().rc == 0
    used = set()
    for method, path in standin(checkout).requests:
        path = re.sub(r"endpointId=\d+", "endpointId=N", re.sub(r"/(\d+)(?=[/?]|$)", "/{id}", path))
        used.add((method, path))
    assert used <= listed, sorted(used - listed)
    assert {m for m, _ in used} == {"GET", "POST", "PUT", "DELETE"}


def test_a_record_copied_onto_a_stack_of_another_environment_does_not_make_it_phoenixs(checkout: Checkout) -> None:
    add_docker_guest(checkout)
    assert checkout.doit().rc == 0
    state = standin(checkout).state
    (agent,) = [e for e in state["endpoints"] if e["Type"] == 2]
    ours = next(s for s in state["stacks"] if s["EndpointId"] == agent["Id"])
    local = next(e for e in state["endpoints"] if e["Type"] == 1)
    # on the local environment, by hand, a stack named like one Phoenix would deploy there, with a copied record
    mine = next(s for s in state["stacks"] if s["EndpointId"] == local["Id"] and s["Name"] == "qdrant_service")
    state["stacks"].remove(mine)
    state["stacks"].append({**ours, "Id": 99, "EndpointId": local["Id"], "content": "services:\n  x:\n    image: y\n"})
    plan = checkout.doit("plan")
    assert re.search(r"stack:qdrant_service@910\s+blocked: not Phoenix's: refused, not overwritten \(stack "
                     r"qdrant_service on environment \d+: its record was made for another stack \(copied\), so it is "
                     r"not this one's\)\. To hand it to Phoenix, remove it in Portainer", plan.output), plan.output
    assert checkout.doit().rc != 0
    assert next(s for s in state["stacks"] if s["Id"] == 99)["content"] == "services:\n  x:\n    image: y\n"


def test_an_environment_is_checked_before_its_agent_is_touched_again(checkout: Checkout) -> None:
    """Validate before destroy: registering 930's environment again (its agent script changed) first checks that
    Phoenix's token works and that the environment at 930's URL is Phoenix's; a hand-made one there stops the
    environment before the agent script reruns, and leaves Portainer as it was."""
    add_docker_guest(checkout)
    assert checkout.doit().rc == 0
    state = standin(checkout).state
    (agent,) = [e for e in state["endpoints"] if e["Type"] == 2]
    state["endpoints"].remove(agent)  # someone replaced Phoenix's environment with their own, at the same URL
    state["endpoints"].append({"Id": 77, "Name": "qdrant-db", "Type": 2, "URL": agent["URL"], "Status": 1, "TagIds": []})
    before = json.loads(json.dumps(state))
    script = checkout.root / "images" / "apps" / "portainer_agent.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    runs = checkout.cache / "sim" / "runs.jsonl"
    ran = runs.read_text()
    mark = len(standin(checkout).requests)
    result = checkout.doit()
    assert result.rc != 0 and "Traceback" not in result.output
    assert result.output.count("(id 77) at tcp://10.0.0.130:9001 that Phoenix did not register: refused") == 1
    assert runs.read_text() == ran  # the agent script did not run again
    assert portainer_writes(checkout, mark) == [] and json.loads(json.dumps(state)) == before
    assert ("GET", "/api/users/me") in standin(checkout).requests[mark:]


def test_portainer_secrets_never_reach_output_cache_or_the_records(checkout: Checkout) -> None:
    """The admin password, Phoenix's API token and a stack secret (value_file) reach Portainer only: not the output
    of a run, plan, info, list --status or status, not .cache/ (the stand-in's own database, Portainer's, aside), not
    Portainer's stack records, not doit's state."""
    import io

    from phoenix.cli.main import main

    secret = "s3cr3t-value-of-the-dev-database"
    path = checkout.root / "etc" / "dev_db_password.conf"
    path.write_text(secret + "\n")
    os.chmod(path, 0o600)

    def use_file(data: dict) -> None:
        variables = data["docker_stacks"]["thinkheads_ai_app"]["environments"]["development"]["variables"]
        variables[1] = {"name": "DATABASE_PASS", "value_file": "dev_db_password.conf"}

    edit_stacks_config(checkout, use_file)
    outputs = [checkout.doit().output]
    password = (checkout.root / "etc" / "phoenix_portainer_password.conf").read_text().strip()
    token = (checkout.root / "etc" / "phoenix_portainer_token.conf").read_text().strip()
    assert len(password) >= 12 and token.startswith("ptr_")
    path.write_text("another-value-entirely\n")  # a change: plan and info explain a redeploy
    outputs += [checkout.doit(*args).output for args in (("plan", "--steps"), ("info", "stack:thinkheads_ai_app@910"),
                                                         ("list", "--status"))]
    outputs.append(checkout.doit().output)
    secrets = (secret, "another-value-entirely", password, token)
    checkout.stop_sim()
    out = io.StringIO()
    assert main(["--project", str(checkout.root), "status", "--json"], out=out) == 0
    outputs.append(out.getvalue())
    for text in outputs:
        assert not any(s in text for s in secrets), text
    for p in checkout.cache.rglob("*"):
        if p.is_file() and p.name != "portainer-state.json":
            data = p.read_bytes()
            assert not any(s.encode() in data for s in secrets), p
    state = json.loads((checkout.cache / "sim" / "portainer-state.json").read_text())
    for stack in state["stacks"]:  # what Portainer keeps: the values it needs, never the record's clear text
        record = env_of(stack)[MARK]
        assert not any(s in record or s in json.dumps(decode(record)) for s in secrets)
    assert password not in json.dumps(state) and token not in json.dumps(state)  # Portainer keeps hashes of both
    # nor a digest of a secret that anyone could test a guess against: the record and .cache/ keep keyed ones only
    import hashlib

    from phoenix.portainer.owner import key_of, secret_digest
    from phoenix.resources import digest

    value, name = "another-value-entirely", ("thinkheads_ai_app", "DATABASE_PASS")
    unkeyed = {digest([*name, value], 16), hashlib.sha256(value.encode()).hexdigest(),
               hashlib.sha256(f"{value}\n".encode()).hexdigest(),
               hashlib.sha256(f"phoenix-stack-variable\0{name[0]}\0{name[1]}\0{value}".encode()).hexdigest()[:16]}
    unkeyed |= {u[:16] for u in unkeyed} | {u[:12] for u in unkeyed}
    (app,) = [s for s in state["stacks"] if s["Name"] == "thinkheads_ai_app"]
    record = env_of(app)[MARK]
    assert decode(record)["inputs"]["var:DATABASE_PASS"] == secret_digest(
        key_of(checkout.root / "etc" / "phoenix_portainer_password.conf"), *name, value)
    assert not any(u in record or u in json.dumps(decode(record)) for u in unkeyed)
    for p in checkout.cache.rglob("*"):
        if p.is_file() and p.name != "portainer-state.json":
            assert not any(u.encode() in p.read_bytes() for u in unkeyed), p
