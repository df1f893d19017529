"""The README's API token privileges (privilege separation on): a token granted exactly those on `/` builds, rebuilds
and updates the estate over the API (fakepve checks each call's privilege as PVE does) and SSH (the root-only part)."""

from __future__ import annotations

import re

from tests.core.conftest import REPO

from .conftest import RemoteCheckout

TOKEN = "phoenix@pve!ci"


def readme_privileges() -> set[str]:
    text = (REPO / "README.md").read_text()
    found = re.search(r"grant the token\s+`([^`]+)` on `/`", text)
    assert found is not None, "the README names the token's privileges"
    return set(found.group(1).split())


def use_token(co: RemoteCheckout, privileges: set[str]) -> None:
    secret = "0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5"
    co.pve.apitokens[TOKEN] = secret
    path = co.root / "etc" / "phoenix_pve_token.conf"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    co.hypervisor["proxmox"].update(token_id=TOKEN, token_file=str(path))
    co.save()
    co.pve.grant(TOKEN, "/", *privileges)


def test_a_token_with_the_readmes_privileges_builds_rebuilds_and_updates(remote: RemoteCheckout):
    privileges = readme_privileges()
    assert "VM.Config.*" in privileges  # every VM.Config.<x>, as PVE's role editor lists them
    granted = (privileges - {"VM.Config.*"}) | {f"VM.Config.{x}" for x in (
        "CDROM", "CPU", "Cloudinit", "Disk", "HWType", "Memory", "Network", "Options")}
    use_token(remote, granted)
    result = remote.doit()
    assert result.rc == 0, result.output
    assert set(result.outcomes().values()) == {"built"}
    assert remote.doit("forget", "ct902").rc == 0
    result = remote.doit()  # a rebuild: destroy, clone, snapshot, the lease
    assert result.rc == 0 and result.outcomes()["ct902"] == "built", result.output
    remote.edit(910, memory_mb=4096)
    result = remote.doit()
    assert result.rc == 0 and result.outcomes()["ct910"] == "updated", result.output


def test_without_the_lease_privileges_the_run_is_refused_before_it_writes(remote: RemoteCheckout):
    """The README's two Pool.* privileges are for the run lease: without them nothing is built."""
    granted = {p for p in readme_privileges() if not p.startswith("Pool.")} - {"VM.Config.*"}
    use_token(remote, granted | {"VM.Config.Options", "VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory",
                                 "VM.Config.Network", "VM.Config.HWType"})
    mark = remote.mark()
    result = remote.doit()
    assert result.rc == 1, result.output
    assert "Pool.Allocate" in result.output and "Traceback" not in result.output, result.output
    assert [w for w in remote.writes(mark) if not w[1].startswith("/api2/json/pools")] == []
