"""SimulatedNode: records calls without secret values, prints what it would run, has every host path."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading

import pytest

from phoenix.errors import PhoenixError
from phoenix.transport.base import ScriptRun
from phoenix.transport.node import Node
from phoenix.transport.simulated import SimulatedNode

SECRET = "hf_TOPSECRET_value_123"


def _run(tmp_path, ctid=950, name="vllm", **kw):
    script = tmp_path / f"{name}.sh"
    script.write_text(f"echo {name}\n")
    lib = tmp_path / "phoenix-common.sh"
    lib.write_text("phx_log() { :; }\n")
    return ScriptRun(ctid=ctid, layer=f"ct{ctid}", name=name, script=script, lib=lib,
                     context={"ctid": ctid, "name": "vllm", "vllm": {"model": "Qwen/Qwen2"}},
                     secrets={"hf_token": SECRET}, **kw)


def test_records_without_secret_values(tmp_path):
    record = tmp_path / "rec" / "transport.jsonl"
    t = SimulatedNode(record)
    lines = []
    run = _run(tmp_path, log_path=tmp_path / "logs" / "ct950.log")
    res = t.pct.run_script(run, lines.append)
    assert res.exit_status == 0 and not res.timed_out
    sha = hashlib.sha256(run.script.read_bytes()).hexdigest()
    assert lines == [f"[ct950 vllm] simulated: would run vllm (sha256 {sha[:12]})"]
    assert (tmp_path / "logs" / "ct950.log").read_text() == lines[0] + "\n"
    t.pct.set(950, {"dev0": "/dev/nvidia0,gid=44", "features": "nesting=1"})
    text = record.read_text()
    assert SECRET not in text
    first, second = (json.loads(x) for x in text.splitlines())
    assert first["op"] == "run_script" and first["ctid"] == 950 and first["name"] == "vllm"
    assert first["script_sha256"] == sha
    assert first["context_keys"] == ["ctid", "name", "vllm"]
    assert first["secrets"] == ["hf_token"]
    assert second == {**second, "op": "pct_set", "ctid": 950, "options": {"dev0": "/dev/nvidia0,gid=44", "features": "nesting=1"}}


def test_node_facts_two_gpus(tmp_path):
    facts = SimulatedNode(tmp_path / "r").facts()
    assert facts.nvidia_driver_version is None
    assert facts.nvidia_devices == ("/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")


def test_thread_safe_appends(tmp_path):
    record = tmp_path / "r.jsonl"
    t: Node = SimulatedNode(record)
    runs = [_run(tmp_path, ctid=900 + i, name=f"s{i}") for i in range(8)]

    def work(run):
        for _ in range(25):
            t.pct.run_script(run, lambda _line: None)

    threads = [threading.Thread(target=work, args=(r,)) for r in runs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    entries = [json.loads(x) for x in record.read_text().splitlines()]
    assert len(entries) == 200
    assert {e["ctid"] for e in entries} == {900 + i for i in range(8)}


def test_remove_secrets_recorded(tmp_path):
    record = tmp_path / "r.jsonl"
    node: Node = SimulatedNode(record)
    node.pct.remove_secrets(951)
    node.pct.set(951, {"cores": 2})   # values are recorded as strings
    first, second = (json.loads(x) for x in record.read_text().splitlines())
    assert first == {**first, "op": "remove_secrets", "ctid": 951} and set(first) == {"op", "ctid", "time"}
    assert second["options"] == {"cores": "2"}


def test_has_every_host_path_and_nothing_to_check(tmp_path):
    node: Node = SimulatedNode(tmp_path / "r.jsonl")
    assert node.simulated
    assert node.missing_paths(["/tank/models", "/definitely/not/here"]) == []
    with pytest.raises(PhoenixError, match="must be absolute"):
        node.missing_paths(["tank/models"])
    node.check()
    node.close()
    assert not (tmp_path / "r.jsonl").exists()   # checks are not operations: nothing recorded


def test_the_node_interface_is_light_to_import():
    """The core imports the Node interface and the simulated node on paths that must stay fast (a no-op doit):
    neither may load SSH (paramiko) or the config models (pydantic, yaml)."""
    code = ("import sys, phoenix.transport.node, phoenix.transport.simulated, phoenix.transport.pct, phoenix.transport.shell; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('paramiko', 'pydantic', 'yaml', 'jinja2'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_host_directory_owners(tmp_path):
    node = SimulatedNode(tmp_path / "sim" / "runs.jsonl")
    made = node.local("/fastData/portainer")
    made.mkdir(parents=True)
    (made / "portainer.db").write_text("data")
    found = node.dir_owners(["/fastData/models", "/fastData/portainer"])
    assert (found["/fastData/models"].uid, found["/fastData/models"].empty) == (100000, True)   # as a node would have it
    assert (found["/fastData/portainer"].uid, found["/fastData/portainer"].empty) == (made.stat().st_uid, False)
    with pytest.raises(PhoenixError, match="is not empty any more"):
        node.give_dirs(["/fastData/portainer"], 100000)
    (made / "portainer.db").unlink()
    node.give_dirs(["/fastData/portainer"], 100000)
    record = [json.loads(line) for line in (tmp_path / "sim" / "runs.jsonl").read_text().splitlines()]
    assert record[-1] == {**record[-1], "op": "give_dirs", "paths": ["/fastData/portainer"], "owner": 100000}
    with pytest.raises(PhoenixError):
        node.dir_owners(["relative/path"])
