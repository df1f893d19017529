"""Nothing is destroyed before the new build can succeed: every check runs before the first write, on a node
configured as a real one (fakepve over HTTPS for the API, a real sshd with the stand-in pct for the node)."""

from __future__ import annotations

import pytest

from .conftest import RemoteCheckout

NODE = "/api2/json/nodes/pve1"


def test_the_estate_builds_through_ssh_and_a_second_run_is_a_noop(remote: RemoteCheckout):
    result = remote.doit()
    assert result.rc == 0, result.output
    assert result.outcomes() == {"ct900": "built", "ct902": "built", "ct910": "built"}
    for ctid, script in ((900, "base_setup"), (902, "docker"), (910, "phoenix_hypervisor_lxc_910")):
        assert remote.sshd.guest(ctid, f"/etc/phoenix/ran-{script}").exists()
    # a template layer's secrets are removed before its snapshot: clones never inherit the Docker Hub token
    assert list(remote.sshd.guest(902, "/etc/phoenix/secrets").iterdir()) == []
    lines = result.output.splitlines()
    removed = next(i for i, line in enumerate(lines) if line.startswith("ct902  remove secrets"))
    assert removed < next(i for i, line in enumerate(lines) if line.startswith("ct902  snapshot docker-snapshot"))
    assert remote.sshd.guest(910, "/etc/phoenix/secrets/portainer_password").read_text() == "secret-portainer_password"
    assert ["set", "902", "--features", "nesting=1,keyctl=1"] in remote.pct_sets()
    mark = remote.mark()
    again = remote.doit()
    assert again.outcomes() == dict.fromkeys(("ct900", "ct902", "ct910"), "up-to-date")
    assert [(m, p) for m, p, _ in remote.pve.requests[mark:]] == [("GET", "/api2/json/cluster/resources")]


def no_writes(co: RemoteCheckout, mark: int, sets: int, result) -> None:
    assert result.rc == 1, result.output
    assert co.writes(mark) == [], co.writes(mark)
    assert len(co.pct_sets()) == sets
    assert "Nothing was changed on the host." in result.output
    assert "Traceback" not in result.output


def break_storage(co: RemoteCheckout) -> str:
    co.edit(910, storage_pool="local-lvm2")
    return "storage 'local-lvm2' (for its root file system) does not exist on the node"


def break_os_template(co: RemoteCheckout) -> str:
    co.pve.storages["local"]["volumes"].pop("vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst")
    co.hypervisor["os_templates"]["ubuntu-24.04"].pop("url")
    co.save()
    co.doit("forget", "ct900")
    return "OS template local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst is not in storage local and has no url"


def unfetchable_os_template(co: RemoteCheckout) -> str:
    co.pve.storages["local"]["volumes"].pop("vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst")
    co.pve.fail("GET", f"{NODE}/query-url-metadata", 500, "can't connect to download.proxmox.com:80", times=10)
    co.doit("forget", "ct900")
    return "the node cannot fetch it from http://download.proxmox.com/images/system/ubuntu-24.04"


def break_secret(co: RemoteCheckout) -> str:
    (co.root / "etc" / "portainer_password.conf").chmod(0o644)
    co.doit("forget", "ct910")
    return "has mode 0644: group or others may access it"


def unknown_host_key(co: RemoteCheckout) -> str:
    empty = co.root / "known_hosts"
    empty.write_text("")
    co.hypervisor["ssh"]["known_hosts"] = str(empty)
    co.save()
    co.doit("forget", "ct910")
    return "ssh-keyscan"


def closed_ssh_port(co: RemoteCheckout) -> str:
    from tests.transport.conftest import free_port

    co.hypervisor["ssh"]["port"] = free_port()
    co.save()
    co.doit("forget", "ct910")
    return "cannot reach"


def wrong_key(co: RemoteCheckout) -> str:
    from tests.transport.conftest import make_key

    make_key(co.root / "other_key")
    co.hypervisor["ssh"]["key_file"] = str(co.root / "other_key")
    co.save()
    co.doit("forget", "ct910")
    return "SSH key authentication"


def missing_host_dir(co: RemoteCheckout) -> str:
    co.edit(910, mount_points=[{"container_path": "/var/lib/portainer", "host_path": str(co.host_dir / "gone")}])
    return f"host directory {co.host_dir / 'gone'} (bind-mounted at /var/lib/portainer) does not exist on the node"


def gpus_on_a_node_without_any(co: RemoteCheckout) -> str:
    co.edit(910, gpu_assignment=[0])
    return "the node reports no NVIDIA device"


CASES = [break_storage, break_os_template, unfetchable_os_template, break_secret, unknown_host_key, closed_ssh_port, wrong_key, missing_host_dir,
         gpus_on_a_node_without_any]


@pytest.mark.parametrize("breaks", CASES, ids=[c.__name__ for c in CASES])
def test_a_failing_check_stops_the_run_before_any_write(remote_built: RemoteCheckout, breaks):
    co = remote_built
    expected = breaks(co)
    mark, sets = co.mark(), len(co.pct_sets())
    result = co.doit()
    no_writes(co, mark, sets, result)
    assert expected in result.output, result.output
    assert "problem(s) found before changing anything" in result.output
    for ctid in (900, 902, 910):  # every guest is still there, as built
        assert co.pve.ct(ctid) is not None and any(t.startswith("phx-id-") for t in co.tags(ctid))


def test_a_long_description_does_not_fail_the_record(remote: RemoteCheckout):
    """The record keeps the description's digest, not its text: 6144 bytes of description fit with it."""
    remote.edit(910, description="x" * 6144)
    result = remote.doit()
    assert result.rc == 0, result.output
    assert any(t.startswith("phx-id-") for t in remote.tags(910))
    assert len(remote.pve.ct(910).config["description"]) <= 8192


def test_a_hand_tagged_guest_without_a_record_is_not_destroyed(remote: RemoteCheckout):
    remote.pve.add_ct(910, "handmade", config={"tags": "phoenix;prod", "hostname": "handmade"})
    result = remote.doit("--continue")
    assert result.rc == 1
    assert "CT 910 is tagged 'phoenix' but carries no Phoenix record" in result.output
    assert remote.pve.ct(910).config["hostname"] == "handmade"
    assert ("DELETE", f"{NODE}/lxc/910") not in remote.writes()


def test_a_missing_host_directory_is_created_when_the_config_says_so(remote_built: RemoteCheckout):
    co = remote_built
    wanted = co.host_dir / "new" / "portainer"
    co.edit(910, mount_points=[{"container_path": "/var/lib/portainer", "host_path": str(wanted), "create_host_path": True}])
    result = co.doit()
    assert result.rc == 0, result.output
    assert f"create host directories {wanted}" in result.output
    assert wanted.is_dir()
    if __import__("os").geteuid() == 0:  # given to the unprivileged container's root (host uid 100000)
        assert wanted.stat().st_uid == 100000
    assert ["set", "910", "--mp0", f"{wanted},mp=/var/lib/portainer"] in co.pct_sets()


def test_every_failing_check_is_listed_in_the_one_message(remote_built: RemoteCheckout):
    """The README: one failing check stops the run with nothing written, and the message lists every problem."""
    co = remote_built
    expected = [breaks(co) for breaks in (break_storage, missing_host_dir, gpus_on_a_node_without_any)]
    mark, sets = co.mark(), len(co.pct_sets())
    result = co.doit()
    no_writes(co, mark, sets, result)
    assert "3 problem(s) found before changing anything" in result.output, result.output
    assert all(e in result.output for e in expected), result.output


def test_one_ssh_connection_serves_a_whole_parallel_run(remote: RemoteCheckout):
    """The README: one SSH connection is shared by all tasks (checks, pct set, scripts, secrets), with -n 4 too."""
    before = remote.sshd.accepted()
    result = remote.doit("-n", "4")
    assert result.rc == 0, result.output
    assert set(result.outcomes().values()) == {"built"}
    assert len(remote.sshd.ssh_commands()) > 3  # many commands ran on the node ...
    assert remote.sshd.accepted() - before == 1  # ... over one login
