"""Cloud-init files rendered from cloudinit/*.yml.j2: checked against cloud-init's schemas, errors that name the
template line and the VM, secrets only in the 0600 rendered file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from phoenix.cloudinit import render as R
from phoenix.cloudinit import write as W
from phoenix.cloudinit.validate import validate
from phoenix.config.estate import load_estate
from phoenix.errors import ConfigError

from .conftest import copy_project


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    return copy_project(tmp_path, vms=True)


def estate(root: Path):
    return load_estate(root / "etc", root / "images")


def no_secret(path: Path) -> str:
    raise AssertionError(f"no secret expected, asked for {path}")


def test_example_vms_render_valid_files(proj: Path):
    e = estate(proj)
    for vmid in e.vms:
        rendered = W.render_checked(e, vmid, instance_id=f"phx-{vmid}", read=no_secret)
        user = yaml.safe_load(rendered.files["user-data"])
        assert user["hostname"] == e.vms[vmid].vm_name and "qemu-guest-agent" in user["packages"]
        assert user["users"][0]["name"] == "phoenix" and user["users"][0]["lock_passwd"] is True
        meta = yaml.safe_load(rendered.files["meta-data"])
        assert meta == {"instance-id": f"phx-{vmid}", "local-hostname": e.vms[vmid].vm_name}
    net = yaml.safe_load(W.render_checked(e, 1002, instance_id="i", read=no_secret).files["network-config"])
    nic = net["ethernets"]["nic0"]
    assert net["version"] == 2 and nic["addresses"] == ["10.0.0.102/24"]
    assert nic["routes"] == [{"to": "0.0.0.0/0", "via": "10.0.0.1"}] and nic["nameservers"]["addresses"] == ["10.0.0.1"]
    assert yaml.safe_load(W.render_checked(e, 9000, instance_id="i", read=no_secret).files["network-config"])[
        "ethernets"]["nic0"]["dhcp4"] is True  # no network_config: DHCP


def test_undefined_variable_names_template_line_and_vm(proj: Path):
    loaded = estate(proj)  # as a run has it, before the template is edited
    path = proj / "cloudinit" / "user-data.yml.j2"
    lines = path.read_text().splitlines()
    lines.insert(5, "bootcmd: [{{ vm.no_such_value | tojson }}]")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        W.render_checked(loaded, 1001, instance_id="i", read=no_secret)
    text = str(info.value)
    assert f"{path}: line 6: rendering it for VM 1001:" in text and "no_such_value" in text, text
    with pytest.raises(ConfigError) as info:  # with the config: once, for every VM it concerns
        estate(proj)
    assert [str(p) for p in info.value.problems] == [f"{path}: line 6: 'dict object' has no attribute 'no_such_value' "
                                                     "(rendered for VMs 1001, 1002, 9000, 9001)"]


def test_per_vm_override_and_schema_problems(proj: Path):
    e = estate(proj)  # as a run has it, before the templates are edited
    own = proj / "cloudinit" / "1002"
    own.mkdir()
    (own / "user-data.yml.j2").write_text("#cloud-config\nhostname: {{ hostname | tojson }}\nnot_a_module: 1\n"
                                          "runcmd: 5\n")
    (own / "network-config.yml.j2").write_text("version: 2\nethernets:\n  nic0:\n    dhcp4: false\n"
                                               "    routes:\n      - to: default\n        via: 10.0.0.1\n")
    W.render_checked(e, 1001, instance_id="i", read=no_secret)  # the others keep the shared templates
    with pytest.raises(ConfigError) as info:
        W.render_checked(e, 1002, instance_id="i", read=no_secret)
    found = [str(p) for p in info.value.problems]
    assert any(str(own / "user-data.yml.j2") in p and "not_a_module" in p for p in found), found
    assert any("runcmd" in p for p in found), found
    assert any("ethernets.nic0.routes[0].to" in p and "0.0.0.0/0" in p for p in found), found
    with pytest.raises(ConfigError) as info:  # with the config, at the template lines
        estate(proj)
    found = [str(p) for p in info.value.problems]
    assert found == [f"{own / 'user-data.yml.j2'}: line 3: unknown top-level key 'not_a_module': cloud-init's "
                     "cloud-config schema (v1) has no such key; fix its name or remove it (rendered for VM 1002)",
                     f"{own / 'user-data.yml.j2'}: line 4 (runcmd): 5 is not of type 'array' (rendered for VM 1002)",
                     f"{own / 'network-config.yml.j2'}: line 6 (ethernets.nic0.routes[0].to): Debian 12's cloud-init "
                     "(22.4) refuses `to: default` though the schema allows it: write `to: 0.0.0.0/0` (rendered for "
                     "VM 1002)"], found


def test_validate_checks_header_size_and_meta_data():
    where = {n: n for n in R.FILES}
    bad = R.Rendered(1, {"user-data": "hostname: x\n" + "#" * (R.SNIPPET_MAX + 1),
                         "network-config": "version: 3\n", "meta-data": "local-hostname: x\n"})
    found = [str(p) for p in validate(bad, where)]
    assert "user-data: line 1: user-data must start with the line #cloud-config" in found
    assert any(p.startswith("user-data: ") and "at most 1048576 bytes" in p for p in found), found
    assert any(p.startswith("network-config: line 1 (version)") for p in found), found
    assert any(p.startswith("meta-data: instance-id: meta-data needs an instance-id (a string)") for p in found)


def test_password_hash_only_from_a_secret_file_and_only_in_the_0600_file(proj: Path, tmp_path: Path):
    data = json.loads((proj / "etc" / "phoenix_vm_configs.json").read_text())
    data["vm_defaults"]["user_config"]["password_hash_file"] = "vm_password_hash"
    (proj / "etc" / "phoenix_vm_configs.json").write_text(json.dumps(data))
    e = estate(proj)
    hashed = "$6$rounds=4096$saltsalt$HASHVALUE"
    identity = R.identity_inputs(R.templates_dir(e.library.root), e, 1001)
    assert hashed not in json.dumps(identity)
    rendered = W.render_checked(e, 1001, instance_id="i", read=lambda p: hashed if p.name == "vm_password_hash" else "")
    assert yaml.safe_load(rendered.files["user-data"])["users"][0]["passwd"] == hashed
    cache = tmp_path / "cache"
    for path in W.write(cache, rendered):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in W.out_dir(cache, 1001).iterdir()) == ["meta-data", "network-config", "user-data"]


def test_identity_follows_the_rendered_text_not_the_template_bytes(proj: Path):
    e = estate(proj)
    d = R.templates_dir(e.library.root)
    before = {v: R.identity_inputs(d, e, v) for v in e.vms}
    path = proj / "cloudinit" / "user-data.yml.j2"
    path.write_text(path.read_text() + "# a comment in the template only\n{% if vm.id == 1002 %}ntp: {enabled: true}\n"
                    "{% endif %}")
    after = {v: R.identity_inputs(d, e, v) for v in e.vms}
    changed = {v for v in e.vms if before[v]["cloudinit:user-data"] != after[v]["cloudinit:user-data"]}
    assert changed == set(e.vms)  # the comment is in every rendered file
    path.write_text(path.read_text().replace("# a comment in the template only\n", ""))
    again = {v: R.identity_inputs(d, e, v) for v in e.vms}
    assert {v for v in e.vms if before[v] != again[v]} == {1002}


def test_the_variables_the_readme_lists(proj: Path):
    """hostname and fqdn (name.searchdomain, else null), timezone from the hypervisor, packages qemu-guest-agent, the
    user (null without user_config), and any text one value (written through tojson)."""
    path = proj / "etc" / "phoenix_hypervisor_config.json"
    hyp = json.loads(path.read_text())
    hyp["network"]["searchdomain"] = "lab.example"
    path.write_text(json.dumps(hyp))
    vms = proj / "etc" / "phoenix_vm_configs.json"
    data = json.loads(vms.read_text())
    data["virtual_machines"][2]["description"] = 'a: b\n- c # "d"'
    vms.write_text(json.dumps(data))
    e = estate(proj)
    values = R.variables(e, 1001)
    assert (values["hostname"], values["fqdn"]) == ("portainer", "portainer.lab.example")
    assert values["timezone"] == hyp["timezone"] and values["packages"] == ["qemu-guest-agent"]
    assert values["vm"] == {"id": 1001, "name": "portainer", "description": 'a: b\n- c # "d"', "layer": "vm1001",
                            "tags": e.vms[1001].tags}
    user = yaml.safe_load(W.render_checked(e, 1001, instance_id="i", read=no_secret).files["user-data"])
    assert user["fqdn"] == "portainer.lab.example"
    hyp["network"].pop("searchdomain")
    path.write_text(json.dumps(hyp))
    assert R.variables(estate(proj), 1001)["fqdn"] is None


def test_a_new_password_hash_alone_does_not_rebuild_but_adding_one_does(proj: Path):
    # the README: "a password hash only as a marker: changing the hash alone does not rebuild"
    e = estate(proj)
    d = R.templates_dir(e.library.root)
    without = R.identity_inputs(d, e, 1001)
    data = json.loads((proj / "etc" / "phoenix_vm_configs.json").read_text())
    data["vm_defaults"]["user_config"]["password_hash_file"] = "vm_password_hash"
    (proj / "etc" / "phoenix_vm_configs.json").write_text(json.dumps(data))
    secret = proj / "etc" / "vm_password_hash"
    secret.write_text("$6$one$AAAA\n")
    secret.chmod(0o600)
    first = R.identity_inputs(d, estate(proj), 1001)
    secret.write_text("$6$two$BBBB\n")
    assert R.identity_inputs(d, estate(proj), 1001) == first != without
