"""Pure helpers of the transport: node-facts parsing on recorded outputs, host key checks, the command lines and scripts."""

from __future__ import annotations

import base64
import io
import subprocess
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from phoenix.errors import PhoenixError
from phoenix.facts.node import NODE_FACTS_SCRIPT, NodeFacts, parse_driver_version, parse_node_facts, parse_nvidia_devices
from phoenix.transport.hostkeys import (
    check_host_key,
    fingerprint,
    judge_host_key,
    known_hosts_name,
    preferred_key_types,
    read_known_hosts,
)
from phoenix.transport.node import missing_paths_command, parse_missing_paths
from phoenix.transport.pct import REMOVE_SECRETS_SCRIPT, delivery, file_name_ok, pct_set_argv
from phoenix.transport.shell import q

# `nvidia-smi --query-gpu=driver_version --format=csv,noheader` on a 2-GPU node: one line per GPU
SMI_TWO_GPUS = "550.54.14\n550.54.14\n"
# nvidia-smi when the kernel module is not loaded (it prints this on stdout and exits 9)
SMI_NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                 "Make sure that the latest NVIDIA driver is installed and running.\n\n")
# /proc/driver/nvidia/version, proprietary and open kernel modules
PROC_PROPRIETARY = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023\n"
                    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n")
PROC_OPEN = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  560.35.03  Release Build  "
             "(dvs-builder@U16-I3-B03-4-3)  Fri Aug 16 21:22:33 UTC 2024\n"
             "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n")
# what the device loop of NODE_FACTS_SCRIPT prints on a node with 12 GPUs and MIG capability nodes
DEVICES = """\
/dev/nvidia0
/dev/nvidia1
/dev/nvidia10
/dev/nvidia11
/dev/nvidia2
/dev/nvidia-caps/nvidia-cap1
/dev/nvidia-caps/nvidia-cap2
/dev/nvidiactl
/dev/nvidia-modeset
/dev/nvidia-uvm
/dev/nvidia-uvm-tools
"""


def test_driver_version_from_nvidia_smi():
    assert parse_driver_version(SMI_TWO_GPUS) == "550.54.14"
    assert parse_driver_version("  470.256.02 \n") == "470.256.02"
    assert parse_driver_version("555.42\n") == "555.42"


def test_driver_version_falls_back_to_proc():
    assert parse_driver_version(SMI_NO_DRIVER, PROC_PROPRIETARY) == "535.129.03"
    assert parse_driver_version("", PROC_OPEN) == "560.35.03"
    assert parse_driver_version(SMI_TWO_GPUS, PROC_OPEN) == "550.54.14"   # nvidia-smi wins


def test_no_driver_is_none():
    assert parse_driver_version(SMI_NO_DRIVER, "") is None
    assert parse_driver_version("", "") is None
    assert parse_driver_version("sh: 1: nvidia-smi: not found\n", "cat: /proc/driver/nvidia/version: No such file\n") is None


def test_devices_sorted_gpus_numerically_then_control_nodes():
    assert parse_nvidia_devices(DEVICES) == (
        "/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia2", "/dev/nvidia10", "/dev/nvidia11",
        "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset",
        "/dev/nvidia-caps/nvidia-cap1", "/dev/nvidia-caps/nvidia-cap2",
    )


def test_devices_ignore_everything_else():
    junk = "/dev/nvidia*\n/dev/nvidia-caps/*\n/dev/nvidiafoo\n/dev/nvme0n1\n/dev/nvidia0 extra\n../dev/nvidia0\n\n/dev/nvidia3\n"
    assert parse_nvidia_devices(junk) == ("/dev/nvidia3",)
    assert parse_nvidia_devices("") == ()


def test_node_facts_from_whole_output():
    out = f"--- nvidia-smi\n{SMI_TWO_GPUS}--- proc\n{PROC_OPEN}--- devices\n/dev/nvidia0\n/dev/nvidia1\n/dev/nvidiactl\n"
    assert parse_node_facts(out) == NodeFacts("550.54.14", ("/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl"))
    assert parse_node_facts("--- nvidia-smi\n--- proc\n--- devices\n") == NodeFacts()
    assert parse_node_facts("") == NodeFacts()


def test_node_facts_script_runs_here():
    """The script itself on this machine: always exits 0, and its output parses (no NVIDIA here: empty facts)."""
    done = subprocess.run(["sh", "-c", NODE_FACTS_SCRIPT], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0
    assert [x for x in done.stdout.splitlines() if x.startswith("--- ")] == ["--- nvidia-smi", "--- proc", "--- devices", "--- lxc-pve"]
    facts = parse_node_facts(done.stdout)
    assert all(d.startswith("/dev/nvidia") for d in facts.nvidia_devices)


# ------------------------------------------------------------------ host keys


def _key() -> paramiko.PKey:
    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem))


def test_fingerprint_format():
    k = _key()
    fp = fingerprint(k)
    assert fp.startswith("SHA256:") and len(fp) == 7 + 43 and "=" not in fp
    assert base64.b64decode(fp[7:] + "=") and fp == k.fingerprint


def test_check_host_key_known_hosts(tmp_path):
    k, other = _key(), _key()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"pve.lan {k.get_name()} {k.get_base64()}\n[pve.lan]:2222 {other.get_name()} {other.get_base64()}\n")
    check_host_key(k, "pve.lan", 22, str(kh), None)
    check_host_key(other, "pve.lan", 2222, str(kh), None)
    with pytest.raises(PhoenixError, match="CHANGED"):
        check_host_key(other, "pve.lan", 22, str(kh), None)
    with pytest.raises(PhoenixError, match="unknown") as e:
        check_host_key(k, "other.lan", 22, str(kh), None, node="pve1")
    assert "node pve1 (other.lan:22)" in str(e.value) and fingerprint(k) in str(e.value)


def test_check_host_key_pinned_ignores_known_hosts(tmp_path):
    k, other = _key(), _key()
    check_host_key(k, "pve.lan", 22, str(tmp_path / "missing"), fingerprint(k))
    check_host_key(k, "pve.lan", 22, str(tmp_path / "missing"), fingerprint(k) + "=")   # ssh-keygen -E sha256 padding
    with pytest.raises(PhoenixError, match="does not match"):
        check_host_key(k, "pve.lan", 22, str(tmp_path / "missing"), fingerprint(other))


def test_preferred_key_types():
    avail = ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    assert preferred_key_types(avail, []) == avail
    assert preferred_key_types(avail, ["ecdsa-sha2-nistp256"])[0] == "ecdsa-sha2-nistp256"
    assert preferred_key_types(avail, ["ssh-rsa"])[:3] == ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]


# ------------------------------------------------------------------ command lines


def test_q_quotes_every_word():
    assert q(["pct", "set", 950, "--description", "a b 'c' $(x)\nd"]) == "pct set 950 --description 'a b '\"'\"'c'\"'\"' $(x)\nd'"


def test_delivery_runs_in_sh_and_keeps_contents_off_the_command_line(tmp_path):
    secret = b"s3cr3t value 'with' $(quotes)\n"
    files = [(str(tmp_path / "g" / "a b"), 0o644, b"plain\n"), (str(tmp_path / "s" / "tok en"), 0o600, secret),
             (str(tmp_path / "g" / "empty"), 0o755, b""), (str(tmp_path / "g" / "bin"), 0o644, bytes(range(256)) * 40),
             (str(tmp_path / "f" / "lock.txt"), 0o644, b"vllm==0.10.1.1\n")]   # a data file: its directory made
    dirs = [str(tmp_path / d) for d in ("g", "l", "r", "s")]
    argv, stdin = delivery(files)
    assert secret not in " ".join(argv).encode() and b"s3cr3t" not in stdin       # base64 on stdin only
    argv = argv[:3] + dirs + argv[7:]                                             # the real dirs are /etc, /opt
    done = subprocess.run(argv, input=stdin, capture_output=True)
    assert done.returncode == 0, done.stderr
    for path, mode, content in files:
        p = Path(path)
        assert p.read_bytes() == content and (p.stat().st_mode & 0o777) == mode
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o755                      # readable, though made after umask 077


def test_known_hosts_name():
    assert known_hosts_name("pve.lan", 22) == "pve.lan"
    assert known_hosts_name("10.0.0.2", 2222) == "[10.0.0.2]:2222"


def test_judge_host_key_on_entries_read():
    k, other = _key(), _key()
    judge_host_key(k, "pve.lan", 22, Path("/kh"), {k.get_name(): k}, None)
    with pytest.raises(PhoenixError, match="CHANGED") as e:
        judge_host_key(k, "pve.lan", 22, Path("/kh"), {other.get_name(): other}, None, node="pve1")
    assert "ssh-keygen -R pve.lan -f /kh" in str(e.value) and "Nothing was run" in str(e.value)
    with pytest.raises(PhoenixError, match="is unknown"):
        judge_host_key(k, "pve.lan", 22, Path("/kh"), {}, None)


def test_corrupt_known_hosts_is_an_error_not_a_traceback(tmp_path):
    """A damaged line (here: bad base64) made paramiko raise InvalidHostKey, which escaped as a traceback."""
    k = _key()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"pve.lan {k.get_name()} {k.get_base64()}\nother.lan ssh-ed25519 AAAA!!!notbase64\n")
    with pytest.raises(PhoenixError) as e:
        check_host_key(k, "pve.lan", 22, str(kh), None)
    msg = str(e.value)
    assert f"cannot read known_hosts file {kh}" in msg and "other.lan ssh-ed25519 AAAA!!!notbase64" in msg
    assert read_known_hosts(str(kh), "pve.lan", 22, strict=False) == {}   # for choosing key types only: no error


def test_pct_set_argv():
    assert pct_set_argv(950, {"dev0": "/dev/nvidia0,gid=44", "mp0": "/a b,mp=/m"}) == [
        "pct", "set", 950, "--dev0", "/dev/nvidia0,gid=44", "--mp0", "/a b,mp=/m"]
    with pytest.raises(PhoenixError, match="invalid pct option name"):
        pct_set_argv(950, {"cores; reboot": "1"})


def test_file_names():
    assert file_name_ok("hf_token") and file_name_ok("odd name $(x)") and file_name_ok("..x")
    assert not any(file_name_ok(n) for n in ("", ".", "..", "a/b", "a\0b"))


def test_remove_secrets_script_runs_here(tmp_path):
    secrets = tmp_path / "secrets"
    (secrets / "sub").mkdir(parents=True)
    for name in ("hf_token", ".dot", "-rf", "sub/x", "with\nnewline"):
        (secrets / name).write_text("v")
    secrets.chmod(0o700)
    subprocess.run(["sh", "-c", REMOVE_SECRETS_SCRIPT, "sh", str(secrets)], check=True)
    assert secrets.is_dir() and list(secrets.iterdir()) == [] and secrets.stat().st_mode & 0o777 == 0o700
    subprocess.run(["sh", "-c", REMOVE_SECRETS_SCRIPT, "sh", str(tmp_path / "absent")], check=True)
    assert not (tmp_path / "absent").exists()


def test_missing_paths_command_runs_here(tmp_path):
    (tmp_path / "dir 'q' $(x)").mkdir()
    (tmp_path / "file").write_text("")
    asked = [str(tmp_path / "dir 'q' $(x)"), str(tmp_path / "file"), str(tmp_path / "gone\nline"), "/"]
    command = missing_paths_command(asked)
    done = subprocess.run(command, shell=True, capture_output=True, check=True)
    assert parse_missing_paths(done.stdout, asked) == [str(tmp_path / "file"), str(tmp_path / "gone\nline")]
    assert parse_missing_paths(b"", asked) == []
    with pytest.raises(PhoenixError, match="not asked"):
        parse_missing_paths(b"/etc\0", asked)
    with pytest.raises(PhoenixError, match="must be absolute"):
        missing_paths_command(["/ok", "rel"])
