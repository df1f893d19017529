"""Config validation: one clear message per problem (file, JSON path, what is expected), nothing touched."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from phoenix.config.estate import load_estate
from phoenix.config.schema import MODELS, schema_text
from phoenix.errors import ConfigError

from .conftest import REPO, Checkout


def copy_example(root: Path) -> Path:
    """The example config and images under root (etc/, images/, stacks/), as a user's checkout has them; its guests
    choose no stacks (tests/stacks checks those)."""
    from .conftest import copy_project

    return copy_project(root)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return copy_example(tmp_path)


def edit(root: Path, fn) -> None:
    path = root / "etc" / "phoenix_lxc_configs.json"
    data = json.loads(path.read_text())
    fn(data["lxc_configs"])
    path.write_text(json.dumps(data))


def edit_hypervisor(root: Path, fn) -> None:
    path = root / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def problems(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_estate(root / "etc", root / "images")
    return [str(p) for p in info.value.problems]


def test_example_estate_reproduces_the_seed():
    estate = load_estate(REPO / "etc", REPO / "images")
    g = estate.guests
    assert {c: (x.name, x.clone_from_ctid, x.template_snapshot_name) for c, x in g.items()} == {
        900: ("BaseTemplate", None, "base-snapshot"), 901: ("BaseTemplateGPU", 900, "gpu-snapshot"),
        902: ("BaseTemplateDocker", 900, "docker-snapshot"), 920: ("BaseTemplateVLLM", 901, "vllm-base-snapshot"),
        910: ("Portainer", 902, None), 950: ("vllmQwen3Coder", 920, None)}
    assert {c: (x.memory_mb, x.cores) for c, x in g.items()} == {
        900: (2048, 2), 901: (2048, 2), 902: (2048, 2), 920: (4096, 4), 910: (32768, 6), 950: (40960, 8)}
    assert g[901].gpu_assignment == g[920].gpu_assignment == g[950].gpu_assignment == [0, 1]
    assert g[902].pct_features.nesting and g[950].app.vllm.model.startswith("Qwen/Qwen3-Coder-30B")


@pytest.mark.parametrize("change, expected", [
    (lambda c: c["950"].update(memory_mb=-1), 'lxc_configs.950.memory_mb: Input should be greater than or equal to 16 (got -1)'),
    (lambda c: c["950"].update(memroy_mb=1), """lxc_configs.950.memroy_mb: unknown key 'memroy_mb'; did you mean 'memory_mb'?"""),
    (lambda c: c["950"].update(clone_from_ctid=999), 'lxc_configs.950.clone_from_ctid: CT 999 is not defined'),
    (lambda c: c["900"].update(clone_from_ctid=950, template=None), "clone_from_ctid forms a cycle"),
    (lambda c: c["950"].update(gpu_assignment="0,7"), 'lxc_configs.950.gpu_assignment[1]: GPU 7 is not among nvidia.gpus [0, 1]'),
    (lambda c: c["910"]["network_config"].update(ip="10.0.0.150/24"), "IP address 10.0.0.150 is also used by CT 950"),
    (lambda c: c["910"].update(name="vllmqwen3coder"), "name vllmqwen3coder is also used by CT 950"),
    (lambda c: c["902"].update(pct_features={"nesting": False}), "docker needs nesting: set pct_features.nesting to true"),
    (lambda c: c["902"].update(pct_features={"nesting": True}), "docker needs keyctl in an unprivileged container"),
    (lambda c: c["910"].update(pct_features={"nesting": True}), "phoenix_hypervisor_lxc_910.sh needs keyctl"),
    (lambda c: c["901"].update(gpu_assignment=[]), 'lxc_configs.901.features[0]: nvidia needs GPUs'),
    (lambda c: c["920"].update(template_snapshot_name=None), 'CT 950 is cloned from it, so it needs template_snapshot_name'),
    (lambda c: c["950"].update(features=["nope"]), "unknown feature 'nope'"),
    (lambda c: c["950"].update(application_script="missing.sh"), "missing.sh does not exist"),
    (lambda c: c["950"]["network_config"].update(ip="10.0.0.300/24"), 'lxc_configs.950.network_config.ip'),
    (lambda c: c["950"].update(mount_points=[{"container_path": "/data", "storage": "local-lvm", "size_gb": 5,
                                              "persistent": True}]), "for persistent data use host_path"),
    (lambda c: c["920"].update(storage_size_gb=8), "a clone cannot be smaller than its parent (32 GB)"),
    (lambda c: c["900"].update(template="ubuntu-99"), "OS template 'ubuntu-99' is not in os_templates"),
    (lambda c: c["902"].update(docker={"source": "dockerhub"}),
     """lxc_configs.902.docker.source: Input should be 'distro' or 'docker' (got "dockerhub")"""),
    (lambda c: c["902"].update(docker={"login_user": "a b"}), 'lxc_configs.902.docker.login_user'),
    (lambda c: c["902"].update(docker={"login_password": "x"}), "unknown key 'login_password'"),
])
def test_bad_config_names_file_path_and_fix(cfg: Path, change, expected):
    edit(cfg, change)
    found = problems(cfg)
    assert any(expected in p for p in found), found
    assert all(p.startswith(str(cfg / "etc")) for p in found), found


def test_every_problem_is_reported_at_once(cfg: Path):
    edit(cfg, lambda c: (c["950"].update(memory_mb=0, cores=0), c["910"]["app"]["portainer"].update(port=70000)))
    found = problems(cfg)
    assert len(found) == 3, found


def test_syntax_error_gives_line_and_column(cfg: Path):
    (cfg / "etc" / "phoenix_lxc_configs.json").write_text('{"lxc_configs": {\n  "900": {,}\n}}')
    assert "invalid JSON at line 2 column" in problems(cfg)[0]


def test_yaml_files_are_accepted(cfg: Path):
    for stem in ("phoenix_hypervisor_config", "phoenix_lxc_configs"):
        src = cfg / "etc" / f"{stem}.json"
        (cfg / "etc" / f"{stem}.yaml").write_text(yaml.safe_dump(json.loads(src.read_text())))
        src.unlink()
    estate = load_estate(cfg / "etc", cfg / "images")
    assert estate.guests[950].gpu_assignment == [0, 1]


def test_bad_config_touches_nothing_on_the_host(tmp_path: Path):
    co = Checkout(tmp_path / "bad")
    try:
        co.edit_guest(950, memory_mb="lots")
        with pytest.raises(SystemExit) as info:
            co.doit()
        assert info.value.code == 2
        assert co.pve.requests == []
    finally:
        co.stop_sim()


def test_committed_schemas_match_the_models():
    for stem in MODELS:
        committed = (REPO / "etc" / f"{stem}.schema.json").read_text()
        assert committed == schema_text(stem), f"run: python -m phoenix.config.schema etc  ({stem})"


def test_schemas_validate_the_example_and_reject_bad_input():
    for stem in MODELS:
        schema = json.loads((REPO / "etc" / f"{stem}.schema.json").read_text())
        jsonschema.validate(json.loads((REPO / "etc" / f"{stem}.json").read_text()), schema)
    schema = json.loads((REPO / "etc" / "phoenix_lxc_configs.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"lxc_configs": {"950": {"name": "x", "memory_mb": -1}}}, schema)


def test_schema_marks_the_flat_app_keys_deprecated_and_names_scripts():
    schema = json.loads((REPO / "etc" / "phoenix_lxc_configs.schema.json").read_text())
    guest = schema["$defs"]["LxcGuest"]["properties"]
    assert guest["vllm_model"]["deprecated"] is True and "app.vllm.model" in guest["vllm_model"]["description"]
    flat = {"lxc_configs": {"950": {"name": "x", "template": "t", "vllm_model": "a/b", "portainer_port": 9443}}}
    jsonschema.validate(flat, schema)  # an editor flags the old keys as deprecated, it does not refuse the file
    for bad in ({"features": ["../../../work/evil"]}, {"application_script": "/etc/passwd"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"lxc_configs": {"950": {"name": "x", "template": "t", **bad}}}, schema)
    hyp = json.loads((REPO / "etc" / "phoenix_hypervisor_config.schema.json").read_text())
    assert "ProxmoxConfig" in hyp["$defs"] and "ProxmoxEndpoint" not in hyp["$defs"]
    assert hyp["$defs"]["StorageDefaults"]["properties"]["templates"]["deprecated"] is True


def test_undefined_grandparent_is_reported_not_raised(cfg: Path):
    edit(cfg, lambda c: c["920"].update(clone_from_ctid=999))  # 950 -> 920 -> 999 (missing)
    found = problems(cfg)
    assert any('lxc_configs.920.clone_from_ctid: CT 999 is not defined in lxc_configs' in p for p in found), found
