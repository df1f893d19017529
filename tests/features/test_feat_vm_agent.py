"""VM features through the guest agent, for real: the steps Phoenix makes for a VM layer (kinds/vm/steps.py) run by
the builder in a Debian 12 chroot, through a stand-in for the QEMU guest agent's API with its limits: argv lists
only, `input-data` at most 64 KiB, `file-write` content at most 61440 characters, output cut at 16 MiB, an exec pid
forgotten once reported exited. base_setup and docker twice: the second run changes nothing."""

from __future__ import annotations

import base64
import itertools
import subprocess
from pathlib import Path
from typing import Any

import pytest

from phoenix.builder import BuildContext, Builder
from phoenix.config.estate import load_estate
from phoenix.errors import PhoenixError
from phoenix.kinds.vm.resources import resources
from phoenix.kinds.vm.steps import feature_runs

from .conftest import GUEST_PATH, REPO

pytestmark = pytest.mark.slow

OUT_MAX = 16 * 1024 * 1024
WATCHED = ("/etc", "/home", "/var/lib/dpkg/status", "/usr/lib/locale", "/var/lib/phoenix/lib")
TOKEN = "phxuser:dckr_pat_NOT_A_REAL_TOKEN"


class ChrootAgent:
    """The API's guest agent endpoints (Pve.call/Pve.get), answered by running in a chroot, within qemu-ga's limits."""

    def __init__(self, root: Path):
        self.root = root
        self.pids = itertools.count(1000)
        self.done: dict[int, dict[str, Any]] = {}
        self.argvs: list[list[str]] = []

    def call(self, method: str, path: str, /, **data: Any) -> Any:
        command = path.rsplit("/", 1)[1]
        if command == "ping":
            return {}
        if command == "file-write":
            assert len(data["content"]) <= 61440, "file-write content over 61440 characters"
            target = self.root / data["file"].lstrip("/")
            raw = base64.b64decode(data["content"]) if data.get("encode") == 0 else data["content"].encode()
            target.write_bytes(raw)  # as qemu-ga: open(…, "w") keeps an existing file's mode
            return None
        if command == "exec":
            argv = data["command"]
            assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), "exec needs an argv list"
            stdin = data.get("input-data", "").encode()
            assert len(stdin) <= 64 * 1024
            self.argvs.append(argv)
            done = subprocess.run(["chroot", str(self.root), "/usr/bin/env", "-i", f"PATH={GUEST_PATH}", "HOME=/root",
                                   *argv], input=stdin, capture_output=True, timeout=1800)
            pid = next(self.pids)
            out = done.stdout + done.stderr
            self.done[pid] = {"exited": 1, "exitcode": done.returncode, "out-data": out[:OUT_MAX].decode("utf-8", "replace"),
                              **({"out-truncated": 1} if len(out) > OUT_MAX else {})}
            return {"pid": pid}
        raise AssertionError(f"unexpected agent call {method} {path}")

    def get(self, path: str, /, **params: Any) -> Any:
        assert path.endswith("/agent/exec-status")
        found = self.done.pop(params["pid"], None)  # reported once, then forgotten
        if found is None:
            raise PhoenixError(f"Agent error: Invalid parameter 'pid' {params['pid']}")
        return found


def build(agent: ChrootAgent, tmp_path: Path, lines: list[str]) -> None:
    estate = load_estate(REPO / "etc", REPO / "images")
    res = resources(estate)["vm9001"]
    steps = feature_runs(estate, res, "pve1")
    ctx = BuildContext(pve=agent, node=None, view=None, clones=None, say=lines.append,  # type: ignore[arg-type]
                       secrets=lambda names, required: {"docker_token": TOKEN} if "docker_token" in names else {},
                       log_path=lambda key: tmp_path / f"{key}.log")
    Builder(ctx, "vm9001").run(steps)


def test_vm_features_run_through_the_agent_and_a_second_run_changes_nothing(guest_factory, tmp_path: Path):
    guest = guest_factory({}, {})
    agent = ChrootAgent(guest.root)
    first: list[str] = []
    build(agent, tmp_path, first)
    text = "\n".join(first)
    assert "[vm9001] base_setup:" in text and "[vm9001] docker:" in text, text
    assert guest.sh("dpkg-query -W -f='${Status}' docker.io", check=False).stdout == "install ok installed"
    assert "docker" in guest.sh("id -nG phoenix").stdout.split()
    assert guest.path("/home/phoenix/.ssh/authorized_keys").read_text().startswith("ssh-ed25519 ")
    assert not guest.path("/var/lib/phoenix/secrets").exists()  # a golden image keeps no secret
    assert TOKEN not in text and TOKEN not in (tmp_path / "vm9001.log").read_text()
    assert not any(TOKEN in " ".join(argv) for argv in agent.argvs)
    before = guest.fingerprint(*WATCHED)
    second: list[str] = []
    build(agent, tmp_path, second)
    again = "\n".join(second)
    assert "base_setup: nothing to change" in again and "docker: nothing to change" in again, again
    after = guest.fingerprint(*WATCHED)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
