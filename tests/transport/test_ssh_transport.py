"""SshTransport against a real OpenSSH server and a stand-in `pct` (see conftest.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest

from phoenix.context import to_env, to_json
from phoenix.errors import PhoenixError
from phoenix.transport.base import CONTEXT_ENV, CONTEXT_JSON, LIB_PATH, SCRIPT_ENV, SECRETS_DIR, NodeTransport, ScriptRun
from phoenix.transport.ssh import SshTransport, fingerprint, known_hosts_name

from .conftest import SshServer, make_key

LIB = 'phx_log() { printf \'%s\\n\' "$*"; }\nPHX_LIB_LOADED=yes\n'
NASTY = "a b  'single' \"double\" $(touch {sentinel}) `touch {sentinel}` ${{HOME}} \\ ; | & * ~ \t\nsecond line\n"


def make_run(tmp_path: Path, ctid: int, body: str, name: str = "feature", **kw) -> ScriptRun:
    d = tmp_path / "src"
    d.mkdir(exist_ok=True)
    script = d / f"{ctid}-{hashlib.sha256(name.encode()).hexdigest()[:8]}.sh"
    script.write_text("set -eu\nsource \"$PHOENIX_LIB\"\n" + body)
    lib = d / "phoenix-common.sh"
    lib.write_text(LIB)
    kw.setdefault("context", {"ctid": ctid, "name": f"guest{ctid}"})
    kw.setdefault("log_path", tmp_path / ".cache" / "logs" / f"ct{ctid}.log")
    return ScriptRun(ctid=ctid, layer=f"ct{ctid}", name=name, script=script, lib=lib, **kw)


class Lines(list):
    """An output callback that remembers when each line arrived."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            self.append(line)
            self.times.append(time.monotonic())


# ------------------------------------------------------------------ run_script


def test_run_script_delivers_layout_streams_and_logs(sshd: SshServer, transport: SshTransport, tmp_path):
    sshd.make_ct(950)
    ctx = {"ctid": 950, "name": "vllm", "vllm": {"model": "Qwen/Qwen2.5-7B", "args": ["--a", "--b"]}}
    run = make_run(tmp_path, 950, """\
phx_log "lib=$PHX_LIB_LOADED"
. "$PHOENIX_ENV"
phx_log "model=$PHX_VLLM_MODEL args=$PHX_VLLM_ARGS"
phx_log "json=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vllm"]["model"])' "$PHOENIX_CONTEXT")"
echo "to stderr" >&2
phx_log first
sleep 1.5
phx_log second
""", name="vllm", context=ctx)
    out = Lines()
    start = time.monotonic()
    res = transport.run_script(run, out)
    end = time.monotonic()
    assert res.exit_status == 0 and not res.timed_out and not res.simulated
    assert out == ["[ct950 vllm] lib=yes", "[ct950 vllm] model=Qwen/Qwen2.5-7B args=--a,--b", "[ct950 vllm] json=Qwen/Qwen2.5-7B",
                   "[ct950 vllm] to stderr", "[ct950 vllm] first", "[ct950 vllm] second"]
    # streamed: "first" arrived well before the script ended
    assert out.times[4] < end - 1.0
    assert res.seconds == pytest.approx(end - start, abs=0.5)
    assert res.tail == tuple(x.removeprefix("[ct950 vllm] ") for x in out)
    assert run.log_path.read_text() == "".join(x + "\n" for x in out)

    g = sshd.guest
    assert g(950, CONTEXT_JSON).read_text() == to_json(ctx)
    assert g(950, CONTEXT_ENV).read_text() == to_env(ctx)
    assert g(950, LIB_PATH).read_text() == LIB
    assert g(950, run.guest_path).read_bytes() == run.script.read_bytes()
    assert stat.S_IMODE(g(950, run.guest_path).stat().st_mode) == 0o755
    assert stat.S_IMODE(g(950, SECRETS_DIR).stat().st_mode) == 0o700
    assert not list(g(950, "/etc/phoenix").rglob("*.phoenix-tmp"))
    # the script ran as `pct exec 950 -- sh -c 'exec "$@" 2>&1' sh timeout ... env PHOENIX_*=... /bin/bash /opt/phoenix/run/vllm`
    last = sshd.commands()[-1]
    assert last[:8] == ["exec", "950", "--", "sh", "-c", 'exec "$@" 2>&1', "sh", "timeout"]
    assert last[-2:] == ["/bin/bash", "/opt/phoenix/run/vllm"]
    assert last[-6:-2] == [f"{k}={v}" for k, v in SCRIPT_ENV.items()] == [
        "PHOENIX_CONTEXT=/etc/phoenix/context.json", "PHOENIX_ENV=/etc/phoenix/context.env",
        "PHOENIX_SECRETS=/etc/phoenix/secrets", "PHOENIX_LIB=/opt/phoenix/lib/phoenix-common.sh"]


def test_log_is_appended_and_tail_is_last_20(sshd, transport, tmp_path):
    sshd.make_ct(951)
    run = make_run(tmp_path, 951, 'for i in $(seq 1 30); do echo "line $i"; done\nprintf "no newline at end"\n')
    run.log_path.parent.mkdir(parents=True)
    run.log_path.write_text("earlier\n")
    res = transport.run_script(run, lambda _: None)
    assert res.tail == (*(f"line {i}" for i in range(12, 31)), "no newline at end")
    lines = run.log_path.read_text().splitlines()
    assert lines[0] == "earlier" and lines[1] == "[ct951 feature] line 1" and len(lines) == 32


def test_exit_status_and_tail(sshd, transport, tmp_path):
    sshd.make_ct(952)
    res = transport.run_script(make_run(tmp_path, 952, 'echo "about to fail"\necho "E: no such package" >&2\nexit 7\n'), Lines())
    assert res.exit_status == 7 and not res.timed_out
    assert res.tail == ("about to fail", "E: no such package")
    res = transport.run_script(make_run(tmp_path, 952, "false\necho unreachable\n"), Lines())
    assert res.exit_status == 1 and res.tail == ()


def test_timeout_kills_the_script(sshd, transport, tmp_path):
    sshd.make_ct(953)
    marker = tmp_path / "still-running"
    run = make_run(tmp_path, 953, f"echo started\nsleep 6 & wait\ntouch {marker}\n", timeout_s=1)
    out = Lines()
    start = time.monotonic()
    res = transport.run_script(run, out)
    elapsed = time.monotonic() - start
    assert res.timed_out and res.exit_status != 0
    assert elapsed < 5, f"took {elapsed:.1f}s: the script was not stopped at its timeout"
    assert out == ["[ct953 feature] started"]
    time.sleep(max(0.0, start + 7.5 - time.monotonic()))
    assert not marker.exists(), "the script kept running after its timeout"


def test_execute_timeout_closes_the_channel(transport):
    start = time.monotonic()
    done = transport.execute("echo before; sleep 5", timeout_s=1, on_output=lambda _b: None)
    assert done.timed_out and done.exit_status == -1
    assert time.monotonic() - start < 3
    assert transport.execute("echo after", timeout_s=10).stdout == b"after\n"   # the connection survives


def test_missing_container(sshd, transport, tmp_path):
    with pytest.raises(PhoenixError, match=r"CT 959 on node pve-test .*'nodes/pve1/lxc/959.conf' does not exist"):
        transport.run_script(make_run(tmp_path, 959, "true\n"), Lines())


# ------------------------------------------------------------------ quoting


def test_quoting_of_names_values_and_paths(sshd, transport, tmp_path):
    sentinel = tmp_path / "pwned"
    nasty = NASTY.format(sentinel=sentinel)
    sshd.make_ct(954)
    name = "my feature 'x' \"y\" $(touch pwned) `touch pwned` ${HOME}\nz"   # one path component: no '/'
    secret = "pa ss'\"$(touch " + str(sentinel) + ")\nword"
    src = tmp_path / "dir with space $(x)"
    src.mkdir()
    run = make_run(src, 954, 'cat "$PHOENIX_SECRETS"/\'odd name $(x)\'; echo\n. "$PHOENIX_ENV"\nprintf "%s\\n" "$PHX_WEIRD"\n',
                   name=name, context={"weird": nasty, "list": [nasty, "b"]}, secrets={"odd name $(x)": secret})
    out = Lines()
    res = transport.run_script(run, out)
    assert res.exit_status == 0, out
    prefix = f"[ct954 {name}] "
    assert out == [prefix + x for x in (secret + "\n" + nasty + "\n").split("\n")[:-1]]
    assert json.loads(sshd.guest(954, CONTEXT_JSON).read_text()) == {"weird": nasty, "list": [nasty, "b"]}
    assert sshd.guest(954, f"/opt/phoenix/run/{name}").read_bytes() == run.script.read_bytes()
    assert sshd.guest(954, f"{SECRETS_DIR}/odd name $(x)").read_text() == secret
    assert not sentinel.exists()
    assert not [p for base in (Path.home(), sshd.root, tmp_path) for p in base.rglob("pwned")]


def test_bad_file_names_refused(sshd, transport, tmp_path):
    with pytest.raises(PhoenixError, match="cannot be a file name"):
        transport.run_script(make_run(tmp_path, 955, "true\n", name="../etc/passwd"), Lines())
    with pytest.raises(PhoenixError, match="cannot be file names"):
        transport.run_script(make_run(tmp_path, 955, "true\n", secrets={"a/b": "x"}), Lines())


def test_pct_set_quoting(sshd, transport, tmp_path):
    sentinel = tmp_path / "pwned"
    sshd.make_ct(956)
    opts = {"description": NASTY.format(sentinel=sentinel), "tags": "gpu;vllm", "dev0": "/dev/nvidia0,gid=44",
            "features": "nesting=1,keyctl=1", "mp0": "/tank/models with space,mp=/models"}
    transport.pct_set(956, opts)
    assert sshd.commands()[-1] == ["set", "956", *[w for k, v in opts.items() for w in (f"--{k}", v)]]
    assert json.loads(sshd.guest(956, "pct-set.json").read_text()) == opts
    assert not sentinel.exists()


def test_pct_set_failure_shows_stderr(sshd, transport):
    sshd.make_ct(957)
    with pytest.raises(PhoenixError, match=r"pct set 957.*exit 255.*Unknown option: bogus"):
        transport.pct_set(957, {"bogus": "1"})
    with pytest.raises(PhoenixError, match="does not exist"):
        transport.pct_set(958, {"cores": "2"})
    with pytest.raises(PhoenixError, match="invalid pct option"):
        transport.pct_set(957, {"--cores 2; reboot": "1"})


# ------------------------------------------------------------------ secrets


def test_secret_values_go_nowhere_but_the_guest_file(sshd, transport, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "hf_LEAKCHECK_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:24]
    sshd.make_ct(960)
    run = make_run(tmp_path, 960, 'sha256sum "$PHOENIX_SECRETS/hf_token" | cut -d" " -f1\nls -l "$PHOENIX_SECRETS"\n',
                   name="docker", secrets={"hf_token": secret, "docker_token": secret + "-2"})
    out = Lines()
    assert transport.run_script(run, out).exit_status == 0
    assert out[0] == "[ct960 docker] " + hashlib.sha256(secret.encode()).hexdigest()
    secret_file = sshd.guest(960, f"{SECRETS_DIR}/hf_token")
    assert secret_file.read_text() == secret
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(sshd.guest(960, f"{SECRETS_DIR}/docker_token").stat().st_mode) == 0o600

    # everywhere else: the .cache dir (per-layer logs), the output, the command lines the node received
    # (both the SSH ones and each pct argv), sshd's DEBUG3 log, every other file on the "node", Python logging
    needle = secret.encode()
    places = [p for p in (tmp_path / ".cache").rglob("*") if p.is_file()]
    places += [p for p in sshd.root.rglob("*") if p.is_file() and SECRETS_DIR.lstrip("/") not in str(p.relative_to(sshd.root))]
    places.append(sshd.log)
    assert run.log_path in places and sshd.root / "commands.jsonl" in places and sshd.root / "ssh-commands.log" in places
    leaked = [str(p) for p in places if needle in p.read_bytes()]
    assert leaked == []
    assert not any(secret in line for line in out)
    assert not any(secret in c for c in sshd.ssh_commands())
    assert secret not in caplog.text


# ------------------------------------------------------------------ threads and the shared connection


def _accepted(sshd: SshServer) -> int:
    return sshd.log.read_text().count("Accepted publickey")


def test_concurrent_runs_share_one_connection(sshd, tmp_path):
    ctids = [961, 962, 963, 964]
    for c in ctids:
        sshd.make_ct(c)
    before = _accepted(sshd)
    transport: NodeTransport = sshd.transport()
    results: dict[int, object] = {}
    outputs = {c: Lines() for c in ctids}
    runs = {c: make_run(tmp_path, c, f'for i in 1 2 3 4 5; do echo "ct{c} $i"; sleep 0.3; done\n'
                        f'[ "$(cat "$PHOENIX_SECRETS/token")" = "tok{c}" ]\n', secrets={"token": f"tok{c}"}) for c in ctids}

    def work(c):
        try:
            results[c] = transport.run_script(runs[c], outputs[c])
        except Exception as e:  # pragma: no cover - reported below
            results[c] = e

    start = time.monotonic()
    threads = [threading.Thread(target=work, args=(c,)) for c in ctids]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    elapsed = time.monotonic() - start
    transport.close()
    for c in ctids:
        assert getattr(results[c], "exit_status", results[c]) == 0
        assert outputs[c] == [f"[ct{c} feature] ct{c} {i}" for i in range(1, 6)]
        assert runs[c].log_path.read_text().splitlines() == outputs[c]
    assert _accepted(sshd) - before == 1, "all threads must share one SSH connection"
    assert elapsed < 4 * 1.5, f"runs did not overlap ({elapsed:.1f}s)"


def test_reconnects_once_when_the_connection_died(sshd, tmp_path):
    sshd.make_ct(965)
    t = sshd.transport()
    try:
        assert t.execute("echo one", timeout_s=10).stdout == b"one\n"
        t._transport.sock.shutdown(socket.SHUT_RDWR)   # the network went away under us
        res = t.run_script(make_run(tmp_path, 965, "echo two\n"), Lines())
        assert res.exit_status == 0
        t.close()
        assert t.execute("echo three", timeout_s=10).stdout == b"three\n"  # lazily reopened after close()
    finally:
        t.close()


def test_refused_channel_keeps_the_connection(sshd, transport):
    """sshd's MaxSessions (10) refusing an 11th channel is not a dead connection: no reconnect, a clear error."""
    t = transport._get_transport()
    held = [t.open_session() for _ in range(10)]
    try:
        with pytest.raises(PhoenixError, match="MaxSessions"):
            transport.execute("true", timeout_s=10)
        assert transport._transport is t and t.is_active()
    finally:
        for ch in held:
            ch.close()
    deadline = time.monotonic() + 10
    while True:  # the server frees the closed sessions asynchronously
        try:
            assert transport.execute("echo ok", timeout_s=10).stdout == b"ok\n"
            break
        except PhoenixError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert transport._transport is t


# ------------------------------------------------------------------ host keys and authentication


def test_unknown_host_key_rejected_with_fingerprint(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    n = len(sshd.ssh_commands())
    t = sshd.transport(known_hosts=str(kh))
    with pytest.raises(PhoenixError) as e:
        t.execute("true", timeout_s=10)
    msg = str(e.value)
    fp = fingerprint(sshd.host_key)
    assert "unknown" in msg and fp in msg and "ssh-ed25519" in msg
    assert f"ssh-keyscan -p {sshd.port} -t ed25519 127.0.0.1 >> {kh}" in msg
    assert f'"host_key_fingerprint": "{fp}"' in msg
    assert "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub" in msg
    assert kh.read_text() == "", "the key must never be added automatically"
    assert len(sshd.ssh_commands()) == n, "nothing may run on an unverified host"
    # a missing known_hosts file is the same as an empty one
    with pytest.raises(PhoenixError, match="unknown"):
        sshd.transport(known_hosts=str(tmp_path / "missing")).execute("true", timeout_s=10)


def test_changed_host_key_rejected(sshd, tmp_path):
    other, other_line = make_key(tmp_path / "other_key")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {other_line}\n")
    with pytest.raises(PhoenixError) as e:
        sshd.transport(known_hosts=str(kh)).execute("true", timeout_s=10)
    msg = str(e.value)
    assert "CHANGED" in msg and fingerprint(sshd.host_key) in msg and fingerprint(other) in msg
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {kh}" in msg


def test_hashed_known_hosts_entry_accepted(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    hashed = paramiko.HostKeys.hash_host(known_hosts_name("127.0.0.1", sshd.port))
    kh.write_text(f"{hashed} {sshd.host_key_line}\n")
    with sshd.transport(known_hosts=str(kh)) as t:
        assert t.execute("echo ok", timeout_s=10).stdout == b"ok\n"


def test_pinned_fingerprint(sshd, tmp_path):
    fp = fingerprint(sshd.host_key)
    with sshd.transport(known_hosts=str(tmp_path / "none"), host_key_fingerprint=fp) as t:
        assert t.execute("echo pinned", timeout_s=10).stdout == b"pinned\n"
    other, _ = make_key(tmp_path / "other_key")
    with pytest.raises(PhoenixError) as e:
        sshd.transport(known_hosts=str(sshd.known_hosts), host_key_fingerprint=fingerprint(other)).execute("true", timeout_s=10)
    assert "does not match" in str(e.value) and fp in str(e.value) and fingerprint(other) in str(e.value)


@pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="ssh-keygen not installed")
def test_fingerprint_matches_ssh_keygen(sshd):
    pub = sshd.tmp / "host.pub"
    pub.write_text(sshd.host_key_line + "\n")
    printed = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    assert printed.split()[1] == fingerprint(sshd.host_key)


def test_authentication_failures(sshd, tmp_path):
    make_key(tmp_path / "stranger")
    with pytest.raises(PhoenixError, match=r"key authentication to .* failed; tried: key file .*stranger.*authorized_keys"):
        sshd.transport(key_file=str(tmp_path / "stranger")).execute("true", timeout_s=10)
    (tmp_path / "stranger").chmod(0o644)
    with pytest.raises(PhoenixError, match=re.escape(f"chmod 600 {tmp_path / 'stranger'}")):
        sshd.transport(key_file=str(tmp_path / "stranger")).execute("true", timeout_s=10)
    with pytest.raises(PhoenixError, match="no SSH key"):
        sshd.transport(key_file=None, use_agent=False).execute("true", timeout_s=10)
    with pytest.raises(PhoenixError, match="does not exist"):
        sshd.transport(key_file=str(tmp_path / "nope")).execute("true", timeout_s=10)


def test_unreachable_node(sshd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]        # bound, not listening: connection refused
        with pytest.raises(PhoenixError, match=r"cannot reach .*127.0.0.1:\d+ \(node pve-test\)"):
            sshd.transport(port=port).execute("true", timeout_s=10)


# ------------------------------------------------------------------ node facts


def test_node_facts_without_nvidia(sshd, transport):
    facts = transport.node_facts()
    assert facts.nvidia_driver_version is None and not facts.simulated
    # whatever this machine has (usually nothing): only NVIDIA character devices
    assert all(re.match(r"^/dev/nvidia", d) and Path(d).is_char_device() for d in facts.nvidia_devices)


def test_node_facts_with_driver(sshd, transport):
    out = sshd.root / "nvidia-smi.out"
    out.write_text("550.54.14\n550.54.14\n")
    try:
        assert transport.node_facts().nvidia_driver_version == "550.54.14"
        out.write_text("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n")
        (sshd.root / "nvidia-smi.rc").write_text("9")
        assert transport.node_facts().nvidia_driver_version is None
    finally:
        out.unlink()
        (sshd.root / "nvidia-smi.rc").unlink(missing_ok=True)
