"""phoenix_stacks_config and the guests' docker_stacks: every problem names the file, the JSON path and the fix, and
nothing reaches a host (loading the config is all that runs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from phoenix.config.compose import required_variables
from phoenix.config.estate import load_estate
from phoenix.errors import ConfigError
from tests.core.conftest import copy_project

STACKS = "phoenix_stacks_config.json"
LXC = "phoenix_lxc_configs.json"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "p", stacks=True)


def edit(root: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = root / "etc" / name
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def problems(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_estate(root / "etc", root / "images")
    return [str(p) for p in e.value.problems]


def test_the_example_loads_and_chooses_two_stacks(root: Path) -> None:
    estate = load_estate(root / "etc", root / "images")
    assert [c.name for c in estate.guests[910].docker_stacks] == ["qdrant_service", "thinkheads_ai_app"]
    assert estate.stacks_file == root / "etc" / STACKS


def test_an_unknown_stack_or_environment_is_named_with_what_exists(root: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["lxc_configs"]["910"]["docker_stacks"] = ["nope", {"name": "thinkheads_ai_app", "environment": "staging"},
                                                       "thinkheads_ai_app"]

    edit(root, LXC, change)
    found = problems(root)
    lxc = str(root / "etc" / LXC)
    assert f"{lxc}: lxc_configs.910.docker_stacks[0]: no stack 'nope' in {root / 'etc' / STACKS} " \
           "(stacks: qdrant_service, thinkheads_ai_app)" in found
    assert any(p.startswith(f'{lxc}: lxc_configs.910.docker_stacks[1].environment: stack \'thinkheads_ai_app\' '
                            "has no environment 'staging' (it has: production, testing, development)") for p in found)
    assert any(p.startswith(f'{lxc}: lxc_configs.910.docker_stacks[2]: stack \'thinkheads_ai_app\' has '
                            "environments production, testing, development: say which") for p in found)


def test_a_variable_without_a_value_is_named_with_the_compose_file(root: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["docker_stacks"]["thinkheads_ai_app"]["environments"]["development"]["variables"].pop(2)  # API_PORT

    edit(root, STACKS, change)
    (found,) = problems(root)
    assert found.startswith(f'{root / "etc" / STACKS}: docker_stacks.thinkheads_ai_app.environments.development')
    assert "uses ${API_PORT} without a default: give it a value in this environment's variables" in found


def test_paths_outside_stacks_and_missing_files_are_refused(root: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["docker_stacks"]["qdrant_service"]["compose_file_path"] = "stacks/../etc/phoenix_lxc_configs.json"
        files = data["docker_stacks"]["thinkheads_ai_app"]["environments"]["development"]["files"]
        files[0]["source"] = "stacks/thinkheads_ai/configs/missing.env"

    edit(root, STACKS, change)
    found = problems(root)
    assert any('docker_stacks.qdrant_service.compose_file_path: \'stacks/../etc/phoenix_lxc_configs.json\' is not '
               "under the project's stacks/ directory" in p for p in found)
    assert any('.files[0].source: ' in p and "missing.env does not exist" in p for p in found)


def test_names_that_portainer_normalises_alike_are_an_error(root: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["docker_stacks"]["Qdrant_Service"] = data["docker_stacks"]["qdrant_service"]

    edit(root, STACKS, change)
    (found,) = problems(root)
    assert found == (f'{root / "etc" / STACKS}: docker_stacks.Qdrant_Service: \'Qdrant_Service\' and '
                     "'qdrant_service' are both 'qdrant_service' to Portainer (lower case, [-_a-z0-9] only): rename one")


def test_a_broken_compose_file_names_its_line(root: Path) -> None:
    (root / "stacks" / "qdrant" / "docker-compose.yml").write_text("services:\n  qdrant: [\n")
    (found,) = problems(root)
    assert "docker-compose.yml: invalid YAML at line 3" in found


def test_the_compose_spec_schema_is_checked(root: Path) -> None:
    (root / "stacks" / "qdrant" / "docker-compose.yml").write_text("services:\n  qdrant:\n    image: q\n    ports: 80\n")
    (found,) = problems(root)
    assert "compose-spec: services/qdrant/ports: 80 is not of type 'array'" in found


def test_stacks_without_a_server_are_an_error(root: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["lxc_configs"]["910"]["app"]["portainer"]["role"] = "none"

    edit(root, LXC, change)
    assert any("portainer_api: guests choose docker_stacks, so Phoenix needs a Portainer server" in p
               for p in problems(root))


@pytest.mark.parametrize(("text", "needed"), [
    ("${A} $B ${C:-x} ${D-y} ${E:?must} $$F ${G:+z}", ["A", "B", "E"]),
    ("image: x:${TAG}\nport: ${TAG}", ["TAG"]),
    ("no variables $$here", []),
])
def test_required_variables(text: str, needed: list[str]) -> None:
    assert required_variables(text) == needed


def test_the_generated_schema_accepts_both_spellings_of_a_stack_choice(root: Path) -> None:
    import jsonschema

    schema = json.loads((root / "etc" / "phoenix_lxc_configs.schema.json").read_text())
    data = json.loads((root / "etc" / LXC).read_text())
    data["lxc_configs"]["910"]["docker_stacks"] = ["qdrant_service", {"name": "thinkheads_ai_app",
                                                                      "environment": "development"}]
    jsonschema.validate(data, schema)
    data["lxc_configs"]["910"]["docker_stacks"] = [42]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_a_secret_written_inline_is_accepted_with_a_note_naming_the_path_and_the_fix(root: Path) -> None:
    """Seed 002's example writes DATABASE_PASS inline in the development environment (the one 910 deploys): accepted,
    with a note; with value_file, or in an environment no guest deploys, nothing is said."""
    note = (f'{root / "etc" / STACKS}: docker_stacks.thinkheads_ai_app.environments.development.variables[1]: '
            "DATABASE_PASS looks like a secret written inline: put it in a 0600 file and give value_file instead")
    password = root / "etc" / "phoenix_portainer_password.conf"
    placeholder = (f'{root / "etc" / "phoenix_hypervisor_config.json"}: secrets.portainer_password_file: created a '
                   f"placeholder secret {password} (mode 0600) for the simulated host")
    assert [str(n) for n in load_estate(root / "etc", root / "images").notes] == [placeholder, note]
    assert oct(password.stat().st_mode & 0o777) == "0o600"
    assert [str(n) for n in load_estate(root / "etc", root / "images").notes] == [note]  # made once

    def from_file(data: dict[str, Any]) -> None:
        data["docker_stacks"]["thinkheads_ai_app"]["environments"]["development"]["variables"][1] = {
            "name": "DATABASE_PASS", "value_file": "dev_db_password.conf"}
        data["docker_stacks"]["thinkheads_ai_app"]["environments"]["testing"]["variables"][1] = {
            "name": "DATABASE_PASS", "value": "inline but deployed nowhere"}

    edit(root, STACKS, from_file)
    secret = root / "etc" / "dev_db_password.conf"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    assert load_estate(root / "etc", root / "images").notes == []



def test_a_guest_names_a_stack_once(root: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["lxc_configs"]["910"]["docker_stacks"].append({"name": "qdrant_service", "environment": "production"})

    edit(root, LXC, change)
    assert problems(root) == [f'{root / "etc" / LXC}: lxc_configs.910.docker_stacks[2]: stack \'qdrant_service\' '
                              "is listed twice: a guest runs a stack once"]


@pytest.mark.parametrize(("text", "says"), [
    ("services:\n  qdrant:\n    restart: always\n", "service 'qdrant' needs image (or build)"),
    ("volumes:\n  data: {}\n", "no services: a Compose file needs services"),
])
def test_a_compose_file_needs_services_with_an_image(root: Path, text: str, says: str) -> None:
    compose = root / "stacks" / "qdrant" / "docker-compose.yml"
    compose.write_text(text)
    assert problems(root) == [f'{root / "etc" / STACKS}: docker_stacks.qdrant_service.environments.production: '
                              f"{compose}: {says}"]


def test_a_guest_that_runs_stacks_through_an_agent_needs_a_static_address(root: Path) -> None:
    """The server's own guest reaches its Docker by the socket; any other guest's agent is reached at its address."""
    def change(data: dict[str, Any]) -> None:
        data["lxc_configs"]["910"]["network_config"]["ip"] = "dhcp"  # the server: fine
        guest = json.loads(json.dumps(data["lxc_configs"]["910"]))
        guest.update({"name": "stacks-930", "docker_stacks": ["qdrant_service"]})
        guest.pop("mac_address", None)
        guest["app"]["portainer"]["role"] = "agent"
        data["lxc_configs"]["930"] = guest

    edit(root, LXC, change)
    assert problems(root) == [f'{root / "etc" / LXC}: lxc_configs.930.network_config.ip: this guest runs stacks '
                              "through a Portainer agent, which the server reaches at the guest's address: give it a "
                              "static ip"]


def test_portainer_api_defaults_and_overrides(root: Path) -> None:
    """The README's portainer_api: url (default https://<server guest's address>:<app.portainer.port>), admin_user
    (admin), token_file (phoenix_portainer_token.conf), agent_port (9001), ca_file or fingerprint."""
    from phoenix.kinds.portainer.resources import target

    tgt = target(load_estate(root / "etc", root / "images"))
    assert (tgt.url, tgt.admin_user, tgt.agent_port, tgt.server_guest) == ("https://10.0.0.99:9443", "admin", 9001, 910)
    assert tgt.token_file == str(root / "etc" / "phoenix_portainer_token.conf") and tgt.verify is True

    def change(data: dict[str, Any]) -> None:
        data["portainer_api"] = {"url": "https://portainer.example:9443/", "admin_user": "ops", "token_file": "pt.conf",
                                 "ca_file": "portainer-ca.pem", "agent_port": 9101}

    edit(root, "phoenix_hypervisor_config.json", change)
    tgt = target(load_estate(root / "etc", root / "images"))
    assert (tgt.url, tgt.admin_user, tgt.agent_port) == ("https://portainer.example:9443", "ops", 9101)
    assert tgt.token_file == str(root / "etc" / "pt.conf") and tgt.verify == str(root / "etc" / "portainer-ca.pem")
