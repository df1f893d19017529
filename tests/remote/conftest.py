"""A Proxmox node made of real parts, configured as a real one: Phoenix's target is `remote`.

The API is fakepve over HTTPS (its own certificate as `ca_file`, its token in a 0600 `token_file`); the node's
shell is the real OpenSSH server of tests/transport/conftest.py with its stand-in `pct`, so the run goes
through SshShell, Pct and SshNode exactly as against a real host. The stand-in `pct` runs commands on this
machine with the guest's /etc/phoenix and /opt/phoenix mapped into a directory per container, so the feature
and app scripts of this checkout are harmless stand-ins that keep the real scripts' headers (what they need,
which secrets) and only write a marker file. The estate is the example's Docker branch: 900 -> 902 -> 910.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from phoenix.sim.host import SimHost
from tests.core.conftest import REPO, Result, copy_project, run_doit
from tests.transport.conftest import SshServer, sshd  # noqa: F401 - the session's sshd fixture

ESTATE = ("900", "902", "910")


def stand_in(script: Path) -> str:
    """The script's `# @phoenix` header lines, then a body that only leaves a marker in the guest (next to its context:
    the stand-in pct maps the guest's /etc/phoenix in the command line and environment, not inside scripts)."""
    header = [line for line in script.read_text().splitlines()[:60] if line.startswith("# @phoenix")]
    return "\n".join(["#!/bin/bash", *header, "set -eu", f'echo "stand-in for {script.name}"',
                      f'touch "$(dirname "$PHOENIX_CONTEXT")/ran-{script.stem}"', ""])


class RemoteCheckout:
    """A checkout whose hypervisor config points at fakepve (remote) and the test sshd (its node)."""

    def __init__(self, root: Path, server: SshServer, image: Path | None = None):
        """image: a built estate saved by save_image (the host's state, the stand-in pct's containers, .cache/)."""
        self.root, self.sshd = root, server
        if image is not None:
            shutil.copytree(image / "fakepve", root / "fakepve")
            shutil.copytree(image / ".cache", root / ".cache")
            for ctid in ESTATE:
                shutil.rmtree(server.root / "ct" / ctid, ignore_errors=True)
                shutil.copytree(image / "ct" / ctid, server.root / "ct" / ctid, symlinks=True)
        self.sim = SimHost(root / "fakepve")
        self.ep = self.sim.start()
        self.pve = self.sim.pve
        copy_project(root, config=False)
        for script in (*(root / "images" / "features").glob("*.sh"), *(root / "images" / "apps").glob("*.sh")):
            script.write_text(stand_in(script))
        (root / "etc").mkdir()
        # the node's own directories: those of the image's estate when starting from one (its mount points)
        self.host_dir = Path((image / "host_dir").read_text()) if image is not None else root / "node-data"
        (self.host_dir / "portainer").mkdir(parents=True, exist_ok=True)
        hyp = json.loads((REPO / "etc" / "phoenix_hypervisor_config.json").read_text())
        hyp.pop("host", None)  # the node's own parts are tests/core/test_host_parts.py's: never set up this machine
        hyp["proxmox"] = {"target": "remote", "api_url": self.ep.url, "node": self.ep.node, "token_id": self.ep.token_id,
                          "token_file": str(self.ep.token_file), "ca_file": str(self.ep.verify)}
        hyp["ssh"] = {"host": server.host, "port": server.port, "user": server.user, "key_file": str(server.client_key),
                      "use_agent": False, "known_hosts": str(server.known_hosts), "connect_timeout_s": 10}
        for name in ("hf_token", "docker_token", "portainer_password"):
            path = root / "etc" / f"{name}.conf"
            path.write_text(f"secret-{name}\n")
            path.chmod(0o600)
            hyp["secrets"][f"{name}_file"] = str(path)
        self.hypervisor = hyp
        lxc = json.loads((REPO / "etc" / "phoenix_lxc_configs.json").read_text())
        lxc["lxc_configs"] = {k: v for k, v in lxc["lxc_configs"].items() if k in ESTATE}
        lxc["lxc_configs"]["910"]["mount_points"][0]["host_path"] = str(self.host_dir / "portainer")
        for guest in lxc["lxc_configs"].values():
            guest.pop("docker_stacks", None)  # the container layers over SSH; tests/stacks runs the stacks
        self.lxc = lxc
        self.save()
        if image is None:
            for ctid in ESTATE:
                server.make_ct(int(ctid))  # the stand-in pct's containers (fakepve keeps their config)

    def save(self) -> None:
        (self.root / "etc" / "phoenix_hypervisor_config.json").write_text(json.dumps(self.hypervisor, indent=1))
        (self.root / "etc" / "phoenix_lxc_configs.json").write_text(json.dumps(self.lxc, indent=1))

    def edit(self, ctid: int, **changes: Any) -> None:
        self.lxc["lxc_configs"][str(ctid)].update(changes)
        self.save()

    def doit(self, *args: str) -> Result:
        return run_doit(self.root, args)

    def writes(self, since: int = 0) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _ in self.pve.requests[since:] if m != "GET"]

    def mark(self) -> int:
        return len(self.pve.requests)

    def pct_sets(self) -> list[list[str]]:
        return [argv for argv in self.sshd.commands() if argv[:1] == ["set"]]

    def tags(self, vmid: int) -> set[str]:
        return set(re.split(r"[;,\s]", self.pve.ct(vmid).config.get("tags") or ""))

    def stop(self) -> None:
        self.sim.stop()

    def save_image(self, image: Path) -> None:
        """Keep this (built) estate so that other tests start from it: the host's state, containers, .cache/."""
        self.sim.stop()
        shutil.copytree(self.root / "fakepve", image / "fakepve")
        shutil.copytree(self.root / ".cache", image / ".cache")
        (image / "host_dir").write_text(str(self.host_dir))
        for ctid in ESTATE:
            shutil.copytree(self.sshd.root / "ct" / ctid, image / "ct" / ctid, symlinks=True)


@pytest.fixture
def remote(tmp_path: Path, sshd: SshServer):  # noqa: F811 - the fixture imported above
    co = RemoteCheckout(tmp_path / "phoenix", sshd)
    yield co
    co.stop()


@pytest.fixture(scope="module")
def built_image(tmp_path_factory: pytest.TempPathFactory, sshd: SshServer) -> Path:  # noqa: F811
    """The estate built once per module through SSH, kept for the tests that start from a built host."""
    work = tmp_path_factory.mktemp("remote-image")
    co = RemoteCheckout(work / "phoenix", sshd)
    result = co.doit()
    assert result.rc == 0, result.output
    co.save_image(work / "image")
    return work / "image"


@pytest.fixture
def remote_built(tmp_path: Path, sshd: SshServer, built_image: Path):  # noqa: F811
    """A checkout against a host where the estate is built (from the module's image: every test starts the same)."""
    co = RemoteCheckout(tmp_path / "phoenix", sshd, built_image)
    mark = co.mark()
    assert co.doit().outcomes() == dict.fromkeys(("ct900", "ct902", "ct910"), "up-to-date")
    assert co.writes(mark) == []
    yield co
    co.stop()
