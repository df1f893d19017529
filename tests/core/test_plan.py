"""Pure planning: identities, decisions and call parameters, without a server."""

from __future__ import annotations

import pytest

from phoenix.config.estate import load_estate
from phoenix.errors import PhoenixError
from phoenix.facts.guests import GuestFacts, parse_record, parse_resources, record_tags, split_tags
from phoenix.kinds import KINDS
from phoenix.kinds.lxc import params as P
from phoenix.kinds.lxc.resources import resources
from phoenix.kinds.lxc.rules import MIB
from phoenix.plan import Action, Planner
from phoenix.resources import Resource

from .conftest import REPO


@pytest.fixture(scope="module")
def example():
    return resources(load_estate(REPO / "etc", REPO / "images"))


def plan(example, host: dict[str, GuestFacts], forced=frozenset(), records=None):
    """The planner's decisions for the example, against a host given by task name."""
    return Planner(example, KINDS).plan(lambda r: host.get(r.key), forced=forced, records=records)


def built_host(lay) -> dict[str, GuestFacts]:
    """A host where every layer is recorded as built from the current config."""
    host: dict[str, GuestFacts] = {}
    for key, layer in lay.items():
        parent = host.get(layer.parent) if layer.parent else None
        tags = record_tags([], layer.identity(parent.build_id if parent else None), f"b{key}", layer.settings_hash)
        host[key] = GuestFacts(layer.vmid, layer.name, "lxc", "running" if layer.runs else "stopped",
                               tags=split_tags(tags), maxmem=layer.settings["memory"] * MIB,
                               maxcpu=layer.settings["cores"], maxdisk=layer.settings["rootfs_gb"] * 1024 ** 3)
    return host


def actions(decisions) -> dict[str, str]:
    return {c: str(d.action) for c, d in decisions.items()}


def test_identity_is_stable_and_depends_on_the_parent_build(example):
    layer = example["ct950"]
    assert layer.identity("abc") == layer.identity("abc")
    assert layer.identity("abc") != layer.identity("abd")
    assert set(layer.inputs) >= {"config", "lib", "app_config", "app:phoenix_hypervisor_lxc_950.sh"}
    assert "os_template" in example["ct900"].inputs and "os_template" not in example["ct901"].inputs


def test_empty_host_builds_everything(example):
    assert set(actions(plan(example, {})).values()) == {"build"}


def test_built_host_is_up_to_date(example):
    assert set(actions(plan(example, built_host(example))).values()) == {"up-to-date"}


def test_changed_input_rebuilds_the_layer_and_its_descendants(example):
    host = built_host(example)
    stale = dict(host)
    stale["ct920"] = GuestFacts(920, tags=split_tags(record_tags([], "0" * 16, "b920", example["ct920"].settings_hash)))
    decisions = plan(example, stale, records={"ct920": {"inputs": {**example["ct920"].inputs, "feature:vllm": "old"},
                                                        "parent_build": "bct901"}})
    assert actions(decisions) == {"ct900": "up-to-date", "ct901": "up-to-date", "ct902": "up-to-date", "ct910": "up-to-date",
                                  "ct920": "rebuild", "ct950": "rebuild"}
    assert decisions["ct920"].reasons == ("feature vllm changed",)
    assert decisions["ct950"].reasons == ("parent ct920 rebuilds",)


def test_forced_layer_rebuilds_with_children(example):
    decisions = plan(example, built_host(example), forced={"ct902"})
    assert {c for c, d in decisions.items() if d.action != Action.OK} == {"ct902", "ct910"}
    assert decisions["ct902"].reasons == ("forced by doit forget",)


def test_memory_drift_is_an_in_place_update(example):
    host = built_host(example)
    f = host["ct950"]
    host["ct950"] = GuestFacts(950, f.name, "lxc", "running", tags=f.tags, maxmem=1024 * MIB, maxcpu=f.maxcpu,
                               maxdisk=f.maxdisk)
    decisions = plan(example, host)
    assert decisions["ct950"].action == Action.UPDATE and decisions["ct950"].reasons == ("memory 1024 -> 40960 MB",)
    assert all(d.action == Action.OK for c, d in decisions.items() if c != "ct950")


def test_unfinished_foreign_and_shrinking_guests(example):
    host = built_host(example)
    host["ct901"] = GuestFacts(901, tags=("phoenix", "phx-building"))
    host["ct910"] = GuestFacts(910, tags=("mine",))
    f = host["ct950"]
    host["ct950"] = GuestFacts(950, f.name, tags=f.tags, maxmem=f.maxmem, maxcpu=f.maxcpu, maxdisk=500 * 1024 ** 3)
    decisions = plan(example, host)
    assert decisions["ct901"].reasons == ("an earlier bake did not finish",)
    assert decisions["ct920"].action == Action.REBUILD  # follows 901
    assert decisions["ct910"].action == Action.BLOCKED and "not managed by Phoenix" in decisions["ct910"].reasons[0]
    assert decisions["ct950"].action == Action.REBUILD


def test_listing_parse_and_record_round_trip():
    items = [{"vmid": 950, "type": "lxc", "node": "pve1", "name": "x", "status": "running",
              "tags": "phoenix;phx-id-abc;phx-b-def;phx-s-123;gpu", "maxmem": 2 * MIB, "maxcpu": 2},
             {"vmid": 100, "type": "qemu", "node": "other"}]
    guests = parse_resources(items)
    assert list(guests) == [950, 100] and (guests[950].node, guests[100].node) == ("pve1", "other")  # the whole cluster
    g = guests[950]
    assert (g.managed, g.identity, g.build_id, g.settings_hash, g.user_tags) == (True, "abc", "def", "123", ("gpu",))
    from phoenix.facts.guests import description
    assert parse_record(description("Serves Qwen", {"identity": "abc"})) == {"identity": "abc"}
    assert parse_record("hand-written text") == {}


@pytest.mark.parametrize("tags, expected", [
    ("phoenix;phx-id-abc;phx-b-def;phx-s-123", ("abc", "def", "123", True, False)),
    ("phoenix, phx-b-def phx-id-abc,phx-id-zzz", ("abc", "def", None, True, False)),  # any separator; the first counts
    ("phoenix;phx-building;phx-id-", (None, None, None, True, True)),                 # an empty value is no value
    ("mine;phx-idx-abc", (None, None, None, False, False)),
    (None, (None, None, None, False, False)),
])
def test_record_tags_are_read_once_from_the_listing(tags, expected):
    g = parse_resources([{"vmid": 1, "type": "lxc", "node": "pve1", "tags": tags}])[1]
    assert (g.identity, g.build_id, g.settings_hash, g.managed, g.building) == expected


UVM = ("/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")


@pytest.mark.parametrize("gpus, devices, expected", [
    ([0, 1], ("/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", *UVM),
     {"dev0": "/dev/nvidia0", "dev1": "/dev/nvidia1", "dev2": "/dev/nvidiactl", "dev3": "/dev/nvidia-uvm",
      "dev4": "/dev/nvidia-uvm-tools"}),
    ([1], ("/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", *UVM, "/dev/nvidia-caps/nvidia-cap1"),
     {"dev0": "/dev/nvidia1", "dev1": "/dev/nvidiactl", "dev2": "/dev/nvidia-uvm", "dev3": "/dev/nvidia-uvm-tools",
      "dev4": "/dev/nvidia-caps/nvidia-cap1"}),
    ([], ("/dev/nvidia0",), {}),
])
def test_gpu_devices(gpus, devices, expected):
    assert P.gpu_devices(gpus, devices) == expected


def test_missing_gpu_device_is_an_error():
    with pytest.raises(PhoenixError, match="GPU 1 is assigned but /dev/nvidia1 is not on the node"):
        P.gpu_devices([0, 1], ("/dev/nvidia0", "/dev/nvidiactl"))


@pytest.mark.parametrize("missing", ["/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidiactl"])
def test_cuda_device_nodes_are_required(missing):
    present = tuple(d for d in ("/dev/nvidia0", "/dev/nvidiactl", *UVM) if d != missing)
    with pytest.raises(PhoenixError, match=f"GPUs are assigned but {missing} is not on the node: CUDA needs them"):
        P.gpu_devices([0], present)


def test_root_only_settings_go_to_pct_set(example):
    s950 = example["ct950"].settings
    api = P.config_params(s950, tags="t", description="d")
    assert "mp0" not in api and not any(k.startswith("dev") for k in api)
    assert P.root_options(s950, {"dev0": "/dev/nvidia0"}) == {"mp0": "/fastData/models,mp=/models", "dev0": "/dev/nvidia0"}
    s902 = example["ct902"].settings  # nesting + keyctl: keyctl is root-only, so the whole flag set goes to pct set
    assert "features" not in P.config_params(s902, tags="t", description="d")
    assert P.root_options(s902, {})["features"] == "nesting=1,keyctl=1"


def test_a_privileged_containers_feature_flags_go_to_pct_set_even_nesting_and_never_a_delete_by_token(example):
    """PVE refuses a token any change of a privileged container's feature flags, removing them included ("changing
    feature flags for privileged container is only allowed for root@pam")."""
    s910, s900 = example["ct910"].settings, example["ct900"].settings  # nesting + keyctl; none
    nesting = {**s910, "features": {**s910["features"], "keyctl": False}}
    for settings in (s910, nesting, s900):
        api = P.config_params(settings, tags="t", description="d", unprivileged=False)
        assert "features" not in api and "delete" not in api, api
        assert "features" not in P.create_params(900, settings, ostemplate="local:vztmpl/u.tar.zst", storage="s",
                                                 unprivileged=False, tags="t", description="d")
    assert P.root_options(nesting, {}, unprivileged=False)["features"] == "nesting=1"
    assert "features" not in P.root_options(s900, {}, unprivileged=False)  # nothing to set, nothing sent
    # unprivileged, as before: nesting alone by token, and no flags is a delete by token
    assert P.config_params(nesting, tags="t", description="d")["features"] == "nesting=1"
    assert P.config_params(s900, tags="t", description="d")["delete"] == "features"


def test_create_and_clone_parameters(example):
    create = P.create_params(900, example["ct900"].settings, ostemplate="local:vztmpl/u.tar.zst", storage="local-lvm",
                             unprivileged=True, tags="phoenix;phx-building", description="d")
    assert create["rootfs"] == "local-lvm:32" and create["onboot"] == 0 and create["unprivileged"] == 1
    assert create["net0"] == "name=eth0,bridge=vmbr0,ip=10.0.0.200/24,gw=10.0.0.1,hwaddr=52:54:00:67:89:00,firewall=0"
    assert P.clone_params(950, "x", snapname="s", linked=False, storage="local-lvm", description="d") == {
        "newid": 950, "hostname": "x", "description": "d", "snapname": "s", "full": 1, "storage": "local-lvm"}
    assert P.clone_params(950, "x", snapname=None, linked=True, storage="local-lvm", description="d")["full"] == 0


def test_identity_is_the_digest_of_format_inputs_and_parent_build(example):
    # The identity is recorded on every built guest: a change to how it is computed rebuilds every estate.
    from phoenix.resources import FORMAT, digest

    for layer in example.values():
        for parent_build in (None, "0123abcd"):
            want = digest({"format": FORMAT, "inputs": layer.inputs, "parent_build": parent_build}, 16)
            assert layer.identity(parent_build) == want
    assert example["ct920"].identity("a") != example["ct920"].identity("b")
    assert example["ct950"].settings_hash == digest(example["ct950"].settings, 10)


def test_last_run_json_is_one_line_per_task_and_parses_back():
    import json

    from phoenix.lastrun import dumps_last_run

    data = {"target": "sim", "api_requests": 1, "wall_seconds": 0.02,
            "tasks": {"ct900": {"outcome": "up-to-date", "seconds": 0.0, "identity": "ab12"},
                      "ct901": {"outcome": "failed", "seconds": 1.5, "identity": None}}}
    text = dumps_last_run(data)
    assert json.loads(text) == data
    assert '    "ct901": {"outcome": "failed", "seconds": 1.5, "identity": null}' in text.splitlines()
    assert json.loads(dumps_last_run({**data, "tasks": {}}))["tasks"] == {}


def test_task_names_and_ancestors():
    from phoenix.kinds.lxc.resources import task_ctid
    from phoenix.resources import Resource, with_ancestors

    assert [task_ctid(n) for n in ("ct950", "ct", "950", "ctx1", "plan")] == [950, None, None, None, None]
    chain = {"ct900": None, "ct901": "ct900", "ct902": "ct900", "ct920": "ct901", "ct950": "ct920", "ct910": "ct902"}
    graph = {c: Resource(c, "lxc", f"l{c}", p, "template", {}, {}) for c, p in chain.items()}
    assert with_ancestors(graph, ["ct950"]) == {"ct950", "ct920", "ct901", "ct900"}
    assert with_ancestors(graph, ["ct910", "ct920", "ct4242"]) == {"ct910", "ct902", "ct920", "ct901", "ct900"}  # no such layer
    assert with_ancestors(graph, []) == set()


def test_a_very_long_chain_is_decided_without_recursion():
    """The planner decides ancestors first, iteratively: 5000 layers in one chain, the root changed, all follow."""
    chain = {f"ct{i}": Resource(f"ct{i}", "lxc", f"l{i}", f"ct{i - 1}" if i else None, "template", {"x": str(i)}, {}, vmid=i)
             for i in range(5000)}
    host = {}
    for key, layer in chain.items():
        parent = host.get(layer.parent)
        identity = "changed0" if key == "ct0" else layer.identity(parent.build_id if parent else None)
        host[key] = GuestFacts(layer.vmid, tags=split_tags(record_tags([], identity, f"b{key}", layer.settings_hash)))
    decisions = Planner(chain, KINDS).plan(lambda r: host.get(r.key))
    assert decisions["ct0"].action == Action.REBUILD
    assert decisions["ct4999"].text == "follows (parent ct4998 rebuilds): ct0 build inputs changed"


def test_a_resource_comes_back_from_the_model_cache_as_it_was(example):
    import json

    from phoenix.resources import Resource

    for res in example.values():
        back = Resource.from_json(json.loads(json.dumps(res.to_json())))
        assert back == res and back.settings_hash == res.settings_hash
        assert back.identity("b1") == res.identity("b1")


def test_the_record_fits_its_budget_whatever_the_estate():
    from phoenix.config.limits import RECORD_BUDGET
    from phoenix.facts.guests import description

    big = {"identity": "abc", "inputs": {f"feature:f{i}": "0" * 12 for i in range(20)},
           "settings": {"mount_points": [{"container_path": f"/data/{i}" * 8} for i in range(40)]}}
    text = description("user text", big)
    assert len(text.encode()) - len("user text") <= RECORD_BUDGET
    assert parse_record(text) == {"identity": "abc", "inputs": big["inputs"]}  # the settings went first
    small = {"identity": "abc", "inputs": {"lib": "1"}, "settings": {"memory": 1}}
    assert parse_record(description("x", small)) == small


def test_a_new_nvidia_driver_rebuilds_the_gpu_layer_and_its_clones_only(example):
    """The driver is an input of the layer that runs the nvidia feature (901): 920 and 950 follow as its clones; the
    base, Docker and Portainer layers stay (a driver is nothing of theirs)."""
    host = built_host(example)
    stale = dict(host)
    stale["ct901"] = GuestFacts(901, tags=split_tags(record_tags([], "0" * 16, "b901", example["ct901"].settings_hash)))
    decisions = plan(example, stale, records={"ct901": {"inputs": {**example["ct901"].inputs, "driver": "old"},
                                                        "parent_build": "bct900"}})
    assert actions(decisions) == {"ct900": "up-to-date", "ct901": "rebuild", "ct902": "up-to-date",
                                  "ct910": "up-to-date", "ct920": "rebuild", "ct950": "rebuild"}
    assert decisions["ct901"].reasons == ("NVIDIA driver version changed",)


def test_only_the_nvidia_layers_inputs_follow_the_driver_version(tmp_path, example):
    import json

    from .conftest import copy_project

    root = copy_project(tmp_path / "p")
    path = root / "etc" / "phoenix_hypervisor_config.json"
    data = json.loads(path.read_text())
    data["nvidia"]["driver_version"] = "999.99.99"
    path.write_text(json.dumps(data))
    other = resources(load_estate(root / "etc", root / "images"))
    assert {k for k in example if other[k].inputs != example[k].inputs} == {"ct901"}
