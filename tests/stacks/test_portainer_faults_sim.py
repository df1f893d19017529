"""Portainer's faults on the simulated host (the stand-in's fault injection, or nothing listening at its URL): each is
one message naming the layer and the cause, blocks only what depends on Portainer, leaves the rest built, exits
non-zero, and the next run recovers without a hand edit."""

from __future__ import annotations

import json
import re
import socket

from phoenix.sim.portainer import FAULTS_FILE
from tests.core.conftest import Checkout

from .test_stacks_sim import STACKS, edit_stacks_config, portainer_writes, stacks_by_name, standin


def faults(co: Checkout, *rules: dict) -> None:
    (co.cache / "sim" / FAULTS_FILE).write_text(json.dumps(list(rules)))


def down(co: Checkout) -> str:
    """Nothing listens where the run finds Portainer; returns what to write back."""
    path = co.cache / "sim" / "portainer.json"
    good = path.read_text()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    path.write_text(json.dumps({**json.loads(good), "url": f"https://127.0.0.1:{port}"}))
    return good


def change_both_stacks(co: Checkout) -> None:
    compose = co.root / "stacks" / "qdrant" / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("v1.15.5", "v1.15.4"))

    def port(data: dict) -> None:
        data["docker_stacks"]["thinkheads_ai_app"]["environments"]["development"]["variables"][2]["value"] = "8003"

    edit_stacks_config(co, port)


def one_message(output: str, text: str) -> None:
    assert "Traceback" not in output and output.count(text) == 1, output


def test_portainer_down_fails_the_environment_layer_only_and_the_next_run_recovers(deployed: Checkout) -> None:
    before = {k: dict(v) for k, v in stacks_by_name(deployed).items()}
    assert deployed.doit("forget", "ct950").rc == 0
    change_both_stacks(deployed)
    good = down(deployed)
    result = deployed.doit()
    assert result.rc == 1, result.output
    one_message(result.output, "is unreachable: Connection refused (GET /api/stacks; 4 tries")
    outcomes = result.outcomes()
    assert outcomes["ct950"] == "built" and outcomes["portainer:server"] == "failed", result.output
    assert not any(outcomes.get(k) in ("built", "updated") for k in STACKS), outcomes
    assert stacks_by_name(deployed) == before  # nothing changed on Portainer
    plan = deployed.doit("plan")
    assert plan.rc == 0 and "Traceback" not in plan.output, plan.output
    assert re.search(r"stack:qdrant_service@910\s+blocked: Portainer cannot be read: Portainer at \S+ is unreachable",
                     plan.output), plan.output
    assert re.search(r"ct950\s+up-to-date", plan.output), plan.output
    (deployed.cache / "sim" / "portainer.json").write_text(good)
    again = deployed.doit()
    assert again.rc == 0, again.output
    assert {k: again.outcomes()[k] for k in STACKS} == {k: "built" for k in STACKS}
    assert "qdrant/qdrant:v1.15.4" in stacks_by_name(deployed)["qdrant_service"]["content"]
    noop = deployed.doit().last_run
    assert (noop["api_requests"], noop["portainer_requests"]) == (1, 1)


def test_a_slow_portainer_is_one_message_naming_the_timeout_and_the_next_run_recovers(deployed: Checkout) -> None:
    path = deployed.root / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    data["portainer_api"] = {**(data.get("portainer_api") or {}), "timeout_s": 0.5}
    path.write_text(json.dumps(data, indent=2))
    change_both_stacks(deployed)
    faults(deployed, {"method": "GET", "path": "^/api/stacks$", "delay": 2})
    mark = len(standin(deployed).requests)
    result = deployed.doit()
    assert result.rc == 1, result.output
    one_message(result.output, "did not answer GET /api/stacks within 0.5s (2 tries)")
    assert portainer_writes(deployed, mark) == []
    faults(deployed)
    again = deployed.doit()
    assert again.rc == 0 and {k: again.outcomes()[k] for k in STACKS} == {k: "built" for k in STACKS}, again.output


def test_a_500_on_one_stack_fails_that_stack_only_and_leaves_it_as_it_was(deployed: Checkout) -> None:
    qdrant = stacks_by_name(deployed)["qdrant_service"]
    change_both_stacks(deployed)
    faults(deployed, {"method": "PUT", "path": f"^/api/stacks/{qdrant['Id']}$", "status": 500,
                      "message": "Unable to deploy stack", "times": 1})
    result = deployed.doit("-c")  # doit's --continue: what does not depend on the failure is still done
    assert result.rc == 1, result.output
    one_message(result.output, f"Portainer refused PUT /api/stacks/{qdrant['Id']}: HTTP 500 Unable to deploy stack")
    assert result.outcomes()["stack:qdrant_service@910"] == "failed"
    assert result.outcomes()["stack:thinkheads_ai_app@910"] == "built"
    after = stacks_by_name(deployed)
    assert after["qdrant_service"]["content"] == qdrant["content"] and after["qdrant_service"]["Env"] == qdrant["Env"]
    again = deployed.doit()
    assert again.rc == 0, again.output
    assert again.outcomes()["stack:qdrant_service@910"] == "built"
    assert again.outcomes()["stack:thinkheads_ai_app@910"] == "up-to-date"


def test_a_409_on_create_is_one_message_and_the_next_run_deploys(deployed: Checkout) -> None:
    standin(deployed).state["stacks"].remove(stacks_by_name(deployed)["qdrant_service"])
    faults(deployed, {"method": "POST", "path": "^/api/stacks/create", "status": 409,
                      "message": "A stack with the normalized name 'qdrant_service' already exists", "times": 1})
    result = deployed.doit()
    assert result.rc == 1, result.output
    one_message(result.output, "HTTP 409 A stack with the normalized name 'qdrant_service' already exists")
    assert "qdrant_service" not in stacks_by_name(deployed)
    assert deployed.doit().rc == 0 and "qdrant_service" in stacks_by_name(deployed)


def test_a_401_mid_run_says_the_next_run_makes_a_new_token_and_it_does(deployed: Checkout) -> None:
    change_both_stacks(deployed)
    # the listing works, then the key is revoked (a person, or the server reset) before the stacks are deployed
    faults(deployed, {"method": "PUT", "path": "^/api/stacks/", "status": 401, "message": "Invalid API key"})
    result = deployed.doit()
    assert result.rc == 1, result.output
    assert "the next run makes a new one with the admin password" in result.output and "Traceback" not in result.output
    standin(deployed).state["keys"] = []
    faults(deployed)
    again = deployed.doit()
    assert again.rc == 0, again.output
    assert again.outcomes()["portainer:server"] == "built"
    assert {k: again.outcomes()[k] for k in STACKS} == {k: "built" for k in STACKS}


def test_a_portainer_reset_with_a_new_database_is_rebuilt_in_one_run(deployed: Checkout) -> None:
    """Portainer restarted on an empty database (its admin from --admin-password-file): the stored token is refused,
    environments and stacks are gone. One run makes a new token, registers the environment and deploys the stacks."""
    state = standin(deployed).state
    admin = state["admin"]
    state.clear()
    state.update({"admin": admin, "keys": [], "endpoints": [], "stacks": [], "tags": [],
                  "next": {"endpoint": 1, "stack": 1, "key": 1, "tag": 1}})
    result = deployed.doit()
    assert result.rc == 0, result.output
    assert result.outcomes()["portainer:server"] == "built"
    assert result.outcomes()["portainer:env@910"] == "built"
    assert {k: result.outcomes()[k] for k in STACKS} == {k: "built" for k in STACKS}
    assert len(standin(deployed).state["endpoints"]) == 1 and set(stacks_by_name(deployed)) == \
        {"qdrant_service", "thinkheads_ai_app"}
    noop = deployed.doit().last_run
    assert (noop["api_requests"], noop["portainer_requests"]) == (1, 1)


def test_without_the_admin_password_the_config_is_refused_before_anything_is_asked(deployed: Checkout, capsys) -> None:
    """Without secrets.portainer_password_file Phoenix can make no token and has no key to tell its own environments
    and stacks from others: the configuration says so (exit 2, with the fix), whatever Portainer holds, before
    anything is asked of Portainer or the host."""
    import pytest

    path = deployed.root / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    data["secrets"].pop("portainer_password_file")
    path.write_text(json.dumps(data, indent=2))
    mark, pve = len(standin(deployed).requests), deployed.mark()
    with pytest.raises(SystemExit) as stopped:
        deployed.doit()
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err
    assert err.count("secrets.portainer_password_file: guests choose docker_stacks, so Phoenix needs the Portainer "
                     "admin password") == 1, err
    assert "set secrets.portainer_password_file in the hypervisor config to a 0600 file" in err
    assert standin(deployed).requests[mark:] == [] and deployed.mark() == pve


def test_an_admin_password_file_others_may_read_is_refused_at_config_load(deployed: Checkout, capsys) -> None:
    import pytest

    password = deployed.root / "etc" / "phoenix_portainer_password.conf"
    password.chmod(0o644)
    mark, pve = len(standin(deployed).requests), deployed.mark()
    with pytest.raises(SystemExit) as stopped:
        deployed.doit()
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err
    assert "the Portainer admin password file (secrets.portainer_password_file)" in err and \
        f"chmod 600 {password}" in err, err
    assert standin(deployed).requests[mark:] == [] and deployed.mark() == pve
