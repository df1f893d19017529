"""Paths of the stacks file that reach Portainer and the containers are refused (exit 2, before any request) when they
climb out: a link under stacks/ to a file outside the project is judged by the file it really is, and a destination
in the container with '..' or control characters is refused, not sent as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phoenix.config.estate import load_estate
from phoenix.errors import ConfigError

from .conftest import copy_project, doit_command

STACKS = "phoenix_stacks_config.json"


def refused(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_estate(root / "etc", root / "images")
    return [str(p) for p in info.value.problems]


def edit_stacks(root: Path, change) -> None:
    path = root / "etc" / STACKS
    data = json.loads(path.read_text())
    change(data["docker_stacks"])
    path.write_text(json.dumps(data))


def files_of(stacks: dict) -> list[dict]:
    return stacks["thinkheads_ai_app"]["environments"]["development"]["files"]


def test_a_compose_file_linking_out_of_the_project_is_refused(tmp_path: Path):
    root = copy_project(tmp_path / "p", stacks=True)
    compose = root / "stacks" / "qdrant" / "docker-compose.yml"
    compose.unlink()
    compose.symlink_to("/etc/passwd")
    result = doit_command(root)
    out = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in out, out
    assert ("compose_file_path: 'stacks/qdrant/docker-compose.yml' is not under the project's stacks/ directory "
            "(links followed") in out, out
    assert "root:x:0:0" not in out  # nothing of the file was read out
    assert not (root / ".cache" / "sim" / "state.json").exists()  # no request: the simulator never started


def test_a_link_inside_stacks_is_fine(tmp_path: Path):
    root = copy_project(tmp_path / "p", stacks=True)
    compose = root / "stacks" / "qdrant" / "docker-compose.yml"
    (root / "stacks" / "qdrant" / "real.yml").write_bytes(compose.read_bytes())
    compose.unlink()
    compose.symlink_to("real.yml")
    load_estate(root / "etc", root / "images")


def test_a_file_source_linking_out_is_refused(tmp_path: Path):
    root = copy_project(tmp_path / "p", stacks=True)
    source = root / files_of(json.loads((root / "etc" / STACKS).read_text())["docker_stacks"])[0]["source"]
    source.unlink()
    source.symlink_to("/etc/passwd")
    found = refused(root)
    assert any(".files[0].source" in p and "links followed" in p for p in found), found


@pytest.mark.parametrize("destination, expected", [
    ("/app/../../etc/shadow", "'/app/../../etc/shadow' climbs with '..' (it would be /etc/shadow)"),
    ("/app/.env\x07", "has control characters"),
    ("app/.env", "is not an absolute path"),
])
def test_a_destination_that_climbs_is_refused(tmp_path: Path, destination: str, expected: str):
    root = copy_project(tmp_path / "p", stacks=True)
    edit_stacks(root, lambda s: files_of(s)[0].update(destination_in_container=destination))
    found = refused(root)
    assert len(found) == 1 and ".files[0].destination_in_container" in found[0], found
    assert expected in found[0], found
