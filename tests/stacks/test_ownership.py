"""Ownership by identity: what marks an environment or a stack as Phoenix's is signed with a key made from the
Portainer admin password, so an unkeyed tag, a typed or copied record, an earlier Phoenix's unsigned (v1) record
or one signed with another password's key makes nothing Phoenix's: it is refused, never used, overwritten or
deleted. Driven through the simulator and the Portainer stand-in; asserted on the stand-in's state."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from phoenix.portainer import owner, record
from phoenix.portainer.record import MARK, decode
from tests.core.conftest import Checkout

from .test_stacks_sim import add_docker_guest, env_of, portainer_writes, stacks_by_name, standin

AGENT_URL = "tcp://10.0.0.130:9001"


def key(co: Checkout) -> bytes:
    return owner.key_of(co.root / "etc" / "phoenix_portainer_password.conf")


def unkeyed_tag(url: str) -> str:
    """The tag an earlier Phoenix gave its agent environments: a digest of the URL that anyone can compute."""
    return "phoenix-env-" + hashlib.sha256(f"phoenix environment\0{url}".encode()).hexdigest()[:16]


def payload_of(value: str) -> str:
    return value[len(record.PREFIX):].partition(".")[0]


def frozen(state: dict) -> str:
    return json.dumps(state, sort_keys=True)


# ------------------------------------------------------------------ the record and the key, as functions


def test_a_record_verifies_with_its_key_only_and_says_why_not() -> None:
    mine, other = owner.derive("the-admin-password-1"), owner.derive("the-admin-password-2")
    env = record.EnvFacts("env-id", "env-build", 3)
    value = record.make(name="web", guest=910, identity="i" * 16, build="b" * 12, parent_build=None,
                        inputs={"compose": "c"}, env=env, key=mine)["value"]
    assert re.fullmatch(r"v2\.[-_A-Za-z0-9]+\.[0-9a-f]{64}", value)
    stack = {"Id": 5, "Name": "web", "EndpointId": 3, "Env": [{"name": MARK, "value": value}]}
    facts = record.parse(stack, mine)
    assert facts.phoenix and facts.identity == "i" * 16 and facts.env == env and facts.why == ""
    assert record.parse(stack, other).why == record.OTHER_KEY  # parses, signed, not with this key

    payload = payload_of(value)
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**data, "identity": "x" * 16}).encode()).decode().rstrip("=")
    signature = value.rpartition(".")[2]
    for typed, why in ((f"v2.{payload}", record.UNSIGNED), (f"v2.{payload}.", record.UNSIGNED),
                       (f"v2.{payload}.{'0' * 64}", record.OTHER_KEY), (f"v2.{forged}.{signature}", record.OTHER_KEY),
                       (f"v2.{payload}.not-hex", record.UNSIGNED), (f"v1.{payload}", record.UNSIGNED_V1),
                       ("v3.whatever", record.UNREADABLE), ("", record.UNREADABLE)):
        found = record.parse({**stack, "Env": [{"name": MARK, "value": typed}]}, mine)
        assert not found.phoenix and found.why == why, typed
    # a genuine record on another stack (another name, another environment) is not that stack's
    assert record.parse({**stack, "Name": "api"}, mine).why == record.COPIED
    assert record.parse({**stack, "EndpointId": 4}, mine).why == record.COPIED
    assert record.parse({**stack, "Env": []}, mine) == record.StackFacts(5, "web", 3, False)


def test_the_tag_and_the_digests_are_keyed_and_kept_apart() -> None:
    mine, other = owner.derive("the-admin-password-1"), owner.derive("the-admin-password-2")
    assert owner.env_tag(mine, AGENT_URL) != owner.env_tag(other, AGENT_URL) != unkeyed_tag(AGENT_URL)
    assert re.fullmatch(r"phoenix-env-[0-9a-f]{16}", owner.env_tag(mine, AGENT_URL))
    assert owner.secret_digest(mine, "app", "PASS", "x") != owner.secret_digest(other, "app", "PASS", "x")
    assert owner.secret_digest(mine, "app", "PASS", "x") != owner.secret_digest(mine, "api", "PASS", "x")
    assert owner.sign(mine, AGENT_URL)[:16] != owner.env_tag(mine, AGENT_URL)[len("phoenix-env-"):]


# ------------------------------------------------------------------ environments


def test_a_hand_made_environment_with_the_old_unkeyed_tag_is_refused_and_left_as_it_was(checkout: Checkout) -> None:
    """An agent environment someone registered at the guest's URL and gave the tag an earlier Phoenix would have
    (a digest of the URL anyone can compute) is not Phoenix's: refused, untouched, and the message says to remove it,
    not to tag it. Removed in Portainer, the next run registers Phoenix's own, with the keyed tag."""
    assert checkout.doit().rc == 0
    add_docker_guest(checkout)
    state = standin(checkout).state
    old = unkeyed_tag(AGENT_URL)
    state["tags"].append({"ID": 50, "Name": old, "Endpoints": {"77": True}, "EndpointGroups": {}})
    state["endpoints"].append({"Id": 77, "Name": "by-hand", "Type": 2, "URL": AGENT_URL, "Status": 1, "TagIds": [50]})
    before, mark = frozen(state), len(standin(checkout).requests)
    result = checkout.doit()
    assert result.rc != 0 and "Traceback" not in result.output
    said = [line for line in result.output.splitlines() if "(id 77)" in line]
    assert len(said) == 1, result.output
    assert (f"environment 'by-hand' (id 77) at {AGENT_URL} that Phoenix did not register: refused, not used. It "
            f"carries the tag {old}, which is not Phoenix's key's: a tag of an earlier Phoenix") in said[0]
    assert "remove that environment in Portainer" in said[0] and "the next run registers Phoenix's own" in said[0]
    assert "`phoenix adopt 930`" in said[0], said[0]
    assert "give it the tag" not in result.output and owner.env_tag(key(checkout), AGENT_URL) not in result.output
    assert portainer_writes(checkout, mark) == [] and frozen(state) == before

    state["endpoints"] = [e for e in state["endpoints"] if e["Id"] != 77]  # handed over: removed in Portainer
    again = checkout.doit()
    assert again.rc == 0, again.output
    (agent,) = [e for e in state["endpoints"] if e["Type"] == 2]
    assert agent["Id"] != 77 and [s["Name"] for s in state["stacks"] if s["EndpointId"] == agent["Id"]] == \
        ["qdrant_service"]
    assert {t["Name"] for t in state["tags"] if t["ID"] in agent["TagIds"]} == {owner.env_tag(key(checkout), AGENT_URL)}


def test_phoenix_finds_its_own_environment_by_its_keyed_tag(checkout: Checkout) -> None:
    """The environment Phoenix registered carries the keyed tag; with its stacks gone (so no record names it), the
    tag alone keeps it Phoenix's: it is used again, not duplicated or refused."""
    add_docker_guest(checkout)
    assert checkout.doit().rc == 0
    state = standin(checkout).state
    (agent,) = [e for e in state["endpoints"] if e["Type"] == 2]
    assert {t["Name"] for t in state["tags"] if t["ID"] in agent["TagIds"]} == {owner.env_tag(key(checkout), AGENT_URL)}
    state["stacks"] = [s for s in state["stacks"] if s["EndpointId"] != agent["Id"]]
    again = checkout.doit()
    assert again.rc == 0, again.output
    assert [e["Id"] for e in state["endpoints"] if e["Type"] == 2] == [agent["Id"]]
    assert [s["Name"] for s in state["stacks"] if s["EndpointId"] == agent["Id"]] == ["qdrant_service"]


# ------------------------------------------------------------------ stacks


@pytest.mark.parametrize("forge", ["unsigned", "wrong signature", "earlier Phoenix (v1)"])
def test_a_hand_made_stack_with_a_typed_record_is_refused_not_overwritten_not_deleted(deployed: Checkout, forge: str,
                                                                                      monkeypatch) -> None:
    """Someone replaces Phoenix's stack with their own of the same name and gives it a record that is valid base64
    JSON (Phoenix's own payload), with no signature, a wrong one, or as an earlier Phoenix's v1: refused with the
    cause and the fix, its content never sent over, and not removed even when the run prunes stacks."""
    state = standin(deployed).state
    mine = stacks_by_name(deployed)["qdrant_service"]
    payload = payload_of(env_of(mine)[MARK])
    typed = {"unsigned": f"v2.{payload}", "wrong signature": f"v2.{payload}.{'ab' * 32}",
             "earlier Phoenix (v1)": f"v1.{payload}"}[forge]
    why = {"unsigned": record.UNSIGNED, "wrong signature": record.OTHER_KEY,
           "earlier Phoenix (v1)": record.UNSIGNED_V1}[forge]
    theirs = {**mine, "Id": 99, "content": "services:\n  mine:\n    image: mine:1\n",
              "Env": [{"name": MARK, "value": typed}]}
    state["stacks"] = [s for s in state["stacks"] if s["Id"] != mine["Id"]] + [theirs]
    # and a hand-made stack that no guest lists, with a record typed to name guest 910: never pruned
    data = decode(env_of(mine)[MARK])
    unlisted = base64.urlsafe_b64encode(json.dumps({**data, "name": "old_app"}).encode()).decode().rstrip("=")
    state["stacks"].append({**theirs, "Id": 98, "Name": "old_app", "Env": [{"name": MARK, "value": f"v2.{unlisted}"}]})
    before = frozen(state)

    plan = deployed.doit("plan")
    assert re.search(r"stack:qdrant_service@910\s+blocked: not Phoenix's: refused, not overwritten \(stack "
                     rf"qdrant_service on environment \d+: {re.escape(why)}\)\. To hand it to Phoenix, remove it in "
                     "Portainer", plan.output), plan.output
    monkeypatch.setenv("PHOENIX_PRUNE_STACKS", "1")
    mark = len(standin(deployed).requests)
    result = deployed.doit()
    assert result.rc != 0 and "Traceback" not in result.output
    assert portainer_writes(deployed, mark) == [] and frozen(state) == before


def test_stacks_signed_with_another_passwords_key_are_refused_and_the_message_names_the_likely_cause(
        checkout: Checkout) -> None:
    """The admin password file changed: Phoenix's key is another, so its records and its environments' tags no longer
    verify. Nothing is registered, redeployed, overwritten or removed, no agent script runs again; the messages name
    the password as the likely cause; with the password put back, the estate is Phoenix's again and a run is a no-op."""
    add_docker_guest(checkout)
    assert checkout.doit().rc == 0
    deployed = checkout
    runs = deployed.cache / "sim" / "runs.jsonl"
    ran = runs.read_text()
    password = deployed.root / "etc" / "phoenix_portainer_password.conf"
    old = password.read_text()
    state = standin(deployed).state
    before = frozen(state)
    model = deployed.root / ".cache" / "model.json"
    made = json.loads(model.read_text())
    assert made["key_file"] == str(password) and str(password) in made["extra"]
    password.write_text("an-entirely-different-admin-password\n")
    plan = deployed.doit("plan")
    remade = json.loads(model.read_text())  # the model is made again: its stacks' keyed digests are the new key's
    assert remade["extra"][str(password)] != made["extra"][str(password)]

    def secret_input(m: dict) -> str:
        (app,) = [r for r in m["resources"] if r["key"] == "stack:thinkheads_ai_app@910"]
        return str(app["inputs"]["var:DATABASE_PASS"])

    assert secret_input(remade) != secret_input(made)
    for name, guest in (("qdrant_service", 910), ("thinkheads_ai_app", 910), ("qdrant_service", 930)):
        assert re.search(rf"stack:{name}@{guest}\s+blocked: not Phoenix's: refused, not overwritten \(stack {name} on "
                         r"environment \d+: its record is signed, but not with Phoenix's key, which is made from the "
                         r"Portainer admin password: if secrets\.portainer_password_file was changed since it was "
                         r"deployed, that is the likely cause", plan.output), plan.output
    mark = len(standin(deployed).requests)
    result = deployed.doit()
    assert result.rc != 0 and "Traceback" not in result.output
    assert "the likely cause (put the password it was deployed with back in that file" in result.output or \
        f"at {AGENT_URL} that Phoenix did not register: refused, not used. It carries the tag " in result.output
    assert portainer_writes(deployed, mark) == [] and frozen(state) == before and runs.read_text() == ran
    continued = deployed.doit("-c")  # every task tried: each refuses, naming the likely cause
    assert continued.rc != 0 and "Traceback" not in continued.output
    assert "(the key is made from secrets.portainer_password_file: if it was changed, that is the likely cause)" in \
        continued.output, continued.output
    assert continued.output.count("put the password it was deployed with back in that file") >= 2, continued.output
    assert portainer_writes(deployed, mark) == [] and frozen(state) == before and runs.read_text() == ran

    password.write_text(old)
    again = deployed.doit()
    assert again.rc == 0, again.output
    assert (again.last_run["api_requests"], again.last_run["portainer_requests"]) == (1, 1)
    assert frozen(state) == before


def test_phoenixs_own_signed_stacks_are_updated_and_the_no_op_stays_one_plus_one(deployed: Checkout) -> None:
    """A stack Phoenix deployed verifies: a compose change updates it in place (no refusal, no second stack), and its
    new record verifies too; the next run is 1 Proxmox and 1 Portainer request."""
    compose = deployed.root / "stacks" / "qdrant" / "docker-compose.yml"
    compose.write_text(compose.read_text() + "# changed\n")
    result = deployed.doit()
    assert result.rc == 0, result.output
    assert sorted(s["Name"] for s in standin(deployed).state["stacks"]) == ["qdrant_service", "thinkheads_ai_app"]
    for stack in standin(deployed).state["stacks"]:
        assert record.parse(stack, key(deployed)).phoenix, stack["Name"]
    noop = deployed.doit()
    assert noop.rc == 0 and (noop.last_run["api_requests"], noop.last_run["portainer_requests"]) == (1, 1)


# ------------------------------------------------------------------ handing over on purpose: phoenix adopt


def adopt(co: Checkout, guest: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from phoenix.cli.main import main

    co.stop_sim()  # the verb's run starts the simulator of the state dir, as a second shell would
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["--project", str(co.root), "adopt", guest], out=out)
    return rc, out.getvalue(), err.getvalue()


def test_adopt_hands_stacks_and_an_environment_signed_with_a_previous_password_back_without_removing_them(
        checkout: Checkout) -> None:
    """After the admin password changed, every record and tag is refused; `phoenix adopt` signs each guest's
    environment and stacks with the new key, sending each stack's own file (no prune, no pull), and removes nothing.
    The next run redeploys them under their records (the same stacks, the same environment, no new one), and the run
    after is a 1 + 1 request no-op."""
    add_docker_guest(checkout)
    assert checkout.doit().rc == 0
    password = checkout.root / "etc" / "phoenix_portainer_password.conf"
    password.write_text("an-entirely-different-admin-password\n")

    def stacks() -> set[tuple[int, int, str, str]]:  # the stand-in as it is now (a verb's run starts it again)
        return {(s["Id"], s["EndpointId"], s["Name"], s["content"]) for s in standin(checkout).state["stacks"]}

    def endpoints() -> list[tuple[int, str]]:
        return [(e["Id"], e["URL"]) for e in standin(checkout).state["endpoints"]]

    before, registered = stacks(), endpoints()
    assert checkout.doit().rc != 0  # refused: signed with another key

    rc, out, err = adopt(checkout, "930")
    assert rc == 0 and "Traceback" not in out + err, out + err
    assert f"at {AGENT_URL} adopted: it carries Phoenix's tag {owner.env_tag(key(checkout), AGENT_URL)}" in out, out
    assert re.search(r"stack qdrant_service \(id \d+\) adopted: signed as Phoenix's, its containers as they were", out)
    rc, out, err = adopt(checkout, "910")
    assert rc == 0 and "is the server's own Docker: Phoenix's already" in out, out + err
    assert out.count(" adopted: signed as Phoenix's") == 2, out
    assert stacks() == before and endpoints() == registered
    assert not any(s.get("pulled") for s in standin(checkout).state["stacks"])
    assert adopt(checkout, "930")[1].count("Phoenix's already") == 2  # a second adopt changes nothing

    again = checkout.doit()
    assert again.rc == 0, again.output
    assert {s[:3] for s in stacks()} == {b[:3] for b in before} and endpoints() == registered
    noop = checkout.doit()
    assert (noop.last_run["api_requests"], noop.last_run["portainer_requests"]) == (1, 1), noop.output


def test_adopt_takes_an_earlier_phoenixs_stack_and_refuses_a_guest_without_stacks(deployed: Checkout) -> None:
    """A stack of the config's name that an earlier Phoenix deployed (an unsigned v1 record) is refused by a run and
    adopted on purpose; a guest that runs no stacks has nothing to adopt (exit 1, one line, nothing written)."""
    state = standin(deployed).state
    (qdrant,) = [s for s in state["stacks"] if s["Name"] == "qdrant_service"]
    v1 = "v1." + base64.urlsafe_b64encode(json.dumps({"guest": 910}).encode()).decode().rstrip("=")
    qdrant["Env"] = [e for e in qdrant["Env"] if e["name"] != MARK] + [{"name": MARK, "value": v1}]
    standin(deployed)._save()  # as the server keeps it (the verb's run starts the simulator again from its files)
    assert deployed.doit().rc != 0
    mark = len(standin(deployed).requests)
    rc, out, err = adopt(deployed, "950")
    assert rc == 1 and err.strip() == ("phoenix: ct950 runs no stacks in the estate (its docker_stacks): it has nothing "
                                       "on Portainer for Phoenix to adopt"), out + err
    assert portainer_writes(deployed, mark) == []
    rc, out, err = adopt(deployed, "910")
    assert rc == 0 and f"stack qdrant_service (id {qdrant['Id']}) adopted" in out, out + err
    (qdrant,) = [s for s in standin(deployed).state["stacks"] if s["Name"] == "qdrant_service"]
    assert record.parse(qdrant, key(deployed)).phoenix
    plan = deployed.doit("plan")
    assert re.search(r"stack:qdrant_service@910\s+follows \(parent portainer:env@910 rebuilds\)", plan.output), plan.output
    again = deployed.doit()
    assert again.rc == 0 and again.outcomes()["stack:qdrant_service@910"] == "built", again.output
    assert deployed.doit().last_run["portainer_requests"] == 1
