"""yamltext.safe_load is yaml.safe_load, faster: the same data for every YAML file the project ships, and the same
error, message and position, for text that does not parse."""

from __future__ import annotations

import pytest
import yaml

from phoenix import yamltext

from .conftest import REPO

SHIPPED = sorted(p for p in REPO.glob("**/*.y*ml*") if ".venv" not in p.parts and "node_modules" not in p.parts
                 and ".cache" not in p.parts and "{%" not in p.read_text() and "{{" not in p.read_text())
BROKEN = ["a: b: c\n", "key: [1, 2\n", "- a\nb: c\n", "x: 'unclosed\n", "\tkey: tab\n"]


def test_the_fast_parser_is_there():
    assert yaml.__with_libyaml__, "PyYAML without libyaml: yamltext falls back to the slow parser"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_the_same_data_as_pyyaml(path):
    text = path.read_text()
    assert yamltext.safe_load(text) == yaml.safe_load(text)


def test_types_are_resolved_as_pyyaml_does():
    text = "a: 1\nb: 1.5\nc: yes\nd: null\ne: 2024-01-02\nf: '010'\ng: 0o10\nh: .inf\n"
    assert yamltext.safe_load(text) == yaml.safe_load(text)


@pytest.mark.parametrize("text", BROKEN)
def test_the_same_error_as_pyyaml(text):
    with pytest.raises(yaml.YAMLError) as ours:
        yamltext.safe_load(text)
    with pytest.raises(yaml.YAMLError) as theirs:
        yaml.safe_load(text)
    assert str(ours.value) == str(theirs.value)


def test_a_python_object_tag_is_refused():
    with pytest.raises(yaml.YAMLError):
        yamltext.safe_load("!!python/object/apply:os.system ['true']\n")


def test_the_same_data_for_the_example_vms_rendered_cloud_init(tmp_path):
    from phoenix.cloudinit import write
    from phoenix.config.estate import load_estate

    from .conftest import copy_project

    root = copy_project(tmp_path, vms=True)
    estate = load_estate(root / "etc", root / "images")
    assert estate.vms
    for vmid in estate.vms:
        rendered = write.render_checked(estate, vmid, instance_id=f"phx-{vmid}", read=lambda p: "a-secret")
        for text in rendered.files.values():
            assert yamltext.safe_load(text) == yaml.safe_load(text)
