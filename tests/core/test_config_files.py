"""Config files as people write them: YAML keys are strings, MACs are not base-60 numbers, a key given twice is
an error, and a file that cannot be read names itself instead of raising."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from phoenix.config.estate import load_estate
from phoenix.config.load import read

from .test_config import copy_example, problems

HYP = "phoenix_hypervisor_config"
LXC = "phoenix_lxc_configs"


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return copy_example(tmp_path)


def to_yaml(cfg: Path, stem: str, edit=None) -> Path:
    """Replace etc/<stem>.json with the same config in YAML, as a person would write it (CTIDs unquoted)."""
    src = cfg / "etc" / f"{stem}.json"
    data = json.loads(src.read_text())
    if stem == LXC:
        data["lxc_configs"] = {int(k): v for k, v in data["lxc_configs"].items()}
    text = yaml.safe_dump(data, sort_keys=False)
    src.unlink()
    path = cfg / "etc" / f"{stem}.yaml"
    path.write_text(edit(text) if edit else text)
    return path


def test_yaml_ctids_unquoted_are_strings(cfg: Path):
    path = to_yaml(cfg, LXC)
    assert "\n  900:\n" in path.read_text()
    estate = load_estate(cfg / "etc", cfg / "images")
    assert sorted(estate.guests) == [900, 901, 902, 910, 920, 950]
    assert estate.guests[950].app.vllm.max_model_len == 32768


def test_yaml_mac_unquoted_is_a_string_not_base_60(cfg: Path):
    path = to_yaml(cfg, LXC, lambda t: t.replace("mac_address: 52:54:00:67:89:00", "mac_address: 12:34:56:12:34:56"))
    assert "mac_address: 12:34:56:12:34:56\n" in path.read_text()
    estate = load_estate(cfg / "etc", cfg / "images")
    assert estate.guests[900].mac_address == "12:34:56:12:34:56"


def test_yaml_numbers_are_still_numbers(tmp_path: Path):
    path = tmp_path / "x.yaml"
    path.write_text("a: 2048\nb: 0x10\nc: 0.9\nd: 12:30\ne: -7\nf: '5'\ng: true\n1: one\n")
    assert read(path) == {"a": 2048, "b": 16, "c": 0.9, "d": "12:30", "e": -7, "f": "5", "g": True, "1": "one"}
    assert type(read(path)["a"]) is int


def test_yaml_merge_keys_still_work(tmp_path: Path):
    path = tmp_path / "x.yaml"
    path.write_text("base: &b {cores: 2, memory_mb: 2048}\nct: {<<: *b, cores: 4}\n")
    assert read(path)["ct"] == {"cores": 4, "memory_mb": 2048}


def test_json_duplicate_key_is_an_error(cfg: Path):
    path = cfg / "etc" / f"{LXC}.json"
    text = path.read_text()
    text = text.replace('"memory_mb": 40960,', '"memory_mb": 40960, "memory_mb": 512,')
    text = text.replace('"lxc_configs": {', '"lxc_configs": {\n"950": {"name": "x", "template": "ubuntu-24.04"},', 1)
    path.write_text(text)
    assert problems(cfg) == [
        f'{path}: lxc_configs.950: key \'950\' is given more than once in this object; keep one',
        f'{path}: lxc_configs.950.memory_mb: key \'memory_mb\' is given more than once in this object; keep one',
    ]


def test_yaml_duplicate_key_is_an_error_with_lines(cfg: Path):
    path = to_yaml(cfg, HYP, lambda t: t.replace("  node: pve1\n", "  node: pve1\n  node: pve2\n"))
    found = problems(cfg)
    lines = path.read_text().splitlines()
    first, second = (i + 1 for i, line in enumerate(lines) if line.startswith("  node: "))
    assert found == [f"{path}: proxmox.node: key 'node' is given more than once in this mapping "
                     f"(lines {first} and {second}); keep one"]


BAD_FILES = {
    "not UTF-8": (lambda p: p.write_bytes(b'{"lxc_configs": {"900": {"name": "caf\xe9"}}}'),
                  "is not UTF-8 text (byte 0xe9 at line 1, offset 37); save the file as UTF-8"),
    "deep JSON": (lambda p: p.write_text("[" * 100000), "is nested too deeply to be a Phoenix config"),
    "empty": (lambda p: p.write_text(" \n"), "the file is empty: it needs a JSON or YAML object"),
    "a directory": (lambda p: (p.unlink(), p.mkdir()), "is a directory, not a file"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_is_named_not_raised(cfg: Path, case):
    path = cfg / "etc" / f"{LXC}.json"
    make, expected = BAD_FILES[case]
    make(path)
    found = problems(cfg)
    assert len(found) == 1 and found[0].startswith(f"{path}: {expected}"), found


def test_deep_yaml_is_named_not_raised(cfg: Path):
    path = to_yaml(cfg, LXC)
    path.write_text("a: " + "[" * 100000)
    assert problems(cfg) == [f"{path}: is nested too deeply to be a Phoenix config (a config is a few levels "
                             "deep): is this the right file?"]


def test_yaml_of_comments_only_is_named(cfg: Path):
    path = to_yaml(cfg, HYP)
    path.write_text("# nothing yet\n")
    assert problems(cfg) == [f"{path}: holds no data (only comments?): it needs a JSON or YAML object"]


def test_unreadable_file_is_named_not_raised(cfg: Path):
    if os.geteuid() != 0:
        path = cfg / "etc" / f"{HYP}.json"
        path.chmod(0)
        found = problems(cfg)
    else:  # root reads any file: read as nobody, in a child, from a copy nobody may reach (tmp_path is 0700)
        root = Path(tempfile.mkdtemp(prefix="phoenix-unreadable-"))
        try:
            root.chmod(0o755)
            copy_example(root)
            path = root / "etc" / f"{HYP}.json"
            path.chmod(0)
            found = as_nobody(lambda: problems(root))
        finally:
            shutil.rmtree(root)
    assert found == [f"{path}: cannot be read: permission denied; let the user running Phoenix read it "
                     f"(e.g. chmod u+r {path}, or run Phoenix as the file's owner)"]


def as_nobody(fn) -> list[str]:
    """fn's result (a list of strings) computed in a child process running as the user nobody."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, json.dumps(fn()).encode())
        except BaseException as e:
            os.write(write_end, json.dumps([repr(e)]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return json.loads(out)
