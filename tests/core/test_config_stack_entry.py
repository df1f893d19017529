"""One bad entry of the stacks file is reported alone: the other stacks still count, so no guest is told that a stack
it chose does not exist (before, the whole file looked empty and every choice was a false "no such stack")."""

from __future__ import annotations

from pathlib import Path

from .conftest import copy_project, doit_command
from .test_config_paths import STACKS, edit_stacks, refused


def test_one_bad_entry_is_the_one_problem(tmp_path: Path):
    root = copy_project(tmp_path / "p", stacks=True, vms=True)
    edit_stacks(root, lambda s: s["qdrant_service"].update(compose_fle_path="x"))
    found = refused(root)
    assert len(found) == 1, found  # the typo alone: no guest's choice of qdrant_service or thinkheads_ai_app
    assert found[0].startswith(f'{root / "etc" / STACKS}: docker_stacks.qdrant_service.compose_fle_path: unknown '
                               "key 'compose_fle_path'; did you mean 'compose_file_path'?"), found
    assert not any("no stack" in p for p in found), found


def test_the_good_entries_are_still_checked(tmp_path: Path):
    root = copy_project(tmp_path / "p", stacks=True)
    edit_stacks(root, lambda s: (s["qdrant_service"].update(environments={"production": {"variables": [{"name": "A"}]}}),
                                 s["thinkheads_ai_app"].update(compose_file_path="stacks/nowhere.yml")))
    found = refused(root)
    assert len([p for p in found if "qdrant_service" in p]) == 1, found  # the bad variable, said once
    assert any('docker_stacks.thinkheads_ai_app.compose_file_path' in p and "does not exist" in p for p in found), found
    assert not any("no stack" in p for p in found), found


def test_an_unreadable_stacks_file_is_one_problem_through_doit(tmp_path: Path):
    root = copy_project(tmp_path / "p", stacks=True)
    (root / "etc" / STACKS).write_text('{"docker_stacks": {,}}')
    result = doit_command(root)
    out = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in out, out
    assert "1 problem(s) in the configuration" in out and "invalid JSON at line 1" in out, out
    assert "no stack" not in out, out
    assert not (root / ".cache" / "sim" / "state.json").exists()
