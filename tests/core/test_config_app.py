"""The config's shape: app settings under `app`, the old flat keys still read (with notes), secrets named once,
the `proxmox` section's model, and the retired storage.templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phoenix.config import hypervisor
from phoenix.config.estate import load_estate
from phoenix.config.hypervisor import HypervisorConfig, ProxmoxConfig, SecretFiles
from phoenix.config.lxc import LxcGuest
from phoenix.secrets import SECRET_NAMES

from .test_config import REPO, copy_example, edit, edit_hypervisor, problems

FLAT = ("portainer_role", "portainer_port", "portainer_version", "vllm_version", "vllm_model", "vllm_served_model_name",
        "vllm_port", "vllm_max_model_len", "vllm_gpu_memory_utilization", "vllm_dtype", "vllm_args")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return copy_example(tmp_path)


def flatten_app(guests: dict) -> None:
    """The example written the way the seed wrote it: app settings as flat keys on the guest."""
    for g in guests.values():
        for section, values in g.pop("app", {}).items():
            g.update({f"{section}_{k}": v for k, v in values.items()})


def test_app_fields_are_the_old_flat_dict():
    g = LxcGuest.model_validate({"name": "x", "template": "t"})
    assert g.app_fields() == {
        "portainer_role": "none", "portainer_port": 9443, "portainer_version": "2.33.5", "vllm_version": "0.10.1.1",
        "vllm_model": None, "vllm_served_model_name": None, "vllm_port": 8000, "vllm_max_model_len": None,
        "vllm_gpu_memory_utilization": 0.9, "vllm_dtype": "auto", "vllm_args": []}
    example = load_estate(REPO / "etc", REPO / "images").guests
    assert example[950].app_fields()["vllm_model"] == "Qwen/Qwen3-Coder-30B-A3B-Instruct"
    assert example[950].app_fields()["vllm_max_model_len"] == 32768
    assert example[910].app_fields()["portainer_role"] == "server"
    assert list(example[910].app_fields()) == list(FLAT)


def test_seed_style_flat_file_loads_with_the_same_app_fields_and_notes(cfg: Path):
    example = load_estate(REPO / "etc", REPO / "images")
    # the example's one note: the seed's inline password, kept as seed 002 wrote it (a test copy deploys no stacks)
    assert [n.path for n in example.notes] == ['$.docker_stacks["thinkheads_ai_app"].environments["development"]'
                                              '.variables[1]']
    edit(cfg, flatten_app)
    data = json.loads((cfg / "etc" / "phoenix_lxc_configs.json").read_text())["lxc_configs"]
    assert "app" not in data["950"] and data["950"]["vllm_model"].startswith("Qwen/")
    flat = load_estate(cfg / "etc", cfg / "images")
    assert {c: g.app_fields() for c, g in flat.guests.items()} == {c: g.app_fields() for c, g in example.guests.items()}
    assert {c: g.app for c, g in flat.guests.items()} == {c: g.app for c, g in example.guests.items()}
    lxc = str(cfg / "etc" / "phoenix_lxc_configs.json")
    assert [str(n) for n in flat.notes] == [
        f'{lxc}: lxc_configs.910.portainer_role: deprecated, use app.portainer.role',
        f'{lxc}: lxc_configs.910.portainer_port: deprecated, use app.portainer.port',
        f'{lxc}: lxc_configs.950.vllm_model: deprecated, use app.vllm.model',
        f'{lxc}: lxc_configs.950.vllm_served_model_name: deprecated, use app.vllm.served_model_name',
        f'{lxc}: lxc_configs.950.vllm_port: deprecated, use app.vllm.port',
        f'{lxc}: lxc_configs.950.vllm_max_model_len: deprecated, use app.vllm.max_model_len',
        f'{lxc}: lxc_configs.950.vllm_gpu_memory_utilization: deprecated, use app.vllm.gpu_memory_utilization',
    ]


def test_flat_and_new_spelling_of_one_key_is_an_error(cfg: Path):
    edit(cfg, lambda c: c["950"].update(vllm_model="Qwen/Other", vllm_port=8001, memory_mb=1))
    found = problems(cfg)
    lxc = cfg / "etc" / "phoenix_lxc_configs.json"
    assert f'{lxc}: lxc_configs.950.vllm_model: vllm_model is the old spelling of app.vllm.model, which is set ' \
           "too: keep app.vllm.model and remove vllm_model" in found
    assert any('lxc_configs.950.vllm_port: vllm_port is the old spelling of app.vllm.port' in p for p in found), found
    assert any('lxc_configs.950.memory_mb: Input should be greater than or equal to 16' in p for p in found), found
    assert len(found) == 3, found


def test_flat_key_given_once_with_other_new_keys_is_merged(cfg: Path):
    edit(cfg, lambda c: c["950"].update(vllm_dtype="bfloat16"))
    estate = load_estate(cfg / "etc", cfg / "images")
    assert estate.guests[950].app.vllm.dtype == "bfloat16"
    assert estate.guests[950].app.vllm.model == "Qwen/Qwen3-Coder-30B-A3B-Instruct"
    assert [n.path for n in estate.notes] == ['$.lxc_configs["950"].vllm_dtype']


def test_app_settings_keep_their_constraints(cfg: Path):
    edit(cfg, lambda c: (c["950"]["app"]["vllm"].update(gpu_memory_utilization=1.5, dtype="Bad Type"),
                         c["910"]["app"]["portainer"].update(role="boss")))
    found = problems(cfg)
    assert any('lxc_configs.950.app.vllm.gpu_memory_utilization: Input should be less than or equal to 1' in p for p in found)
    assert any('lxc_configs.950.app.vllm.dtype: String should match pattern' in p for p in found)
    assert any('lxc_configs.910.app.portainer.role: Input should be' in p for p in found)
    assert len(found) == 3, found


def test_a_vllm_app_needs_a_model(cfg: Path):
    edit(cfg, lambda c: c["950"]["app"]["vllm"].pop("model"))
    assert any('lxc_configs.950.app.vllm.model: an app serving vLLM needs app.vllm.model' in p for p in problems(cfg))


def test_secret_files_follow_the_secret_names():
    assert list(SecretFiles.model_fields) == [f"{n}_file" for n in SECRET_NAMES]
    files = SecretFiles.model_validate({f"{SECRET_NAMES[0]}_file": "x.conf"})
    assert files.file(SECRET_NAMES[0]) == "x.conf" and files.file(SECRET_NAMES[-1]) is None
    with pytest.raises(KeyError):
        files.file("nope")


def test_proxmox_section_model_is_proxmox_config():
    assert HypervisorConfig.model_fields["proxmox"].annotation is ProxmoxConfig
    assert not hasattr(hypervisor, "ProxmoxEndpoint")  # the run-time type is phoenix.pve.endpoint.Endpoint


def test_storage_templates_is_accepted_with_a_note(cfg: Path):
    assert "templates" not in json.loads((REPO / "etc" / "phoenix_hypervisor_config.json").read_text())["storage"]
    edit_hypervisor(cfg, lambda d: d["storage"].update(templates="local"))
    estate = load_estate(cfg / "etc", cfg / "images")
    hyp = cfg / "etc" / "phoenix_hypervisor_config.json"
    assert [str(n) for n in estate.notes] == [
        f"{hyp}: storage.templates: deprecated and unused: each OS template's volume names its storage "
        "(local:vztmpl/...); remove storage.templates"]
