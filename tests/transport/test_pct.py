"""Pct (run_script, set, remove_secrets) over a real SshShell, against a real OpenSSH server and a stand-in `pct` (see conftest.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import stat
import threading
import time
from pathlib import Path

import pytest

from phoenix.context import to_env, to_json
from phoenix.errors import PhoenixError
from phoenix.transport.base import CONTEXT_ENV, CONTEXT_JSON, FILES_DIR, LIB_PATH, SCRIPT_ENV, SECRETS_DIR
from phoenix.transport.node import Node, SshNode

from .conftest import SshServer
from .runs import LIB, NASTY, Lines, make_run

# ------------------------------------------------------------------ run_script


def test_run_script_delivers_layout_streams_and_logs(sshd: SshServer, node: SshNode, tmp_path):
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
    res = node.pct.run_script(run, out)
    end = time.monotonic()
    assert res.exit_status == 0 and not res.timed_out
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


def test_log_is_appended_and_tail_is_last_20(sshd, node, tmp_path):
    sshd.make_ct(951)
    run = make_run(tmp_path, 951, 'for i in $(seq 1 30); do echo "line $i"; done\nprintf "no newline at end"\n')
    run.log_path.parent.mkdir(parents=True)
    run.log_path.write_text("earlier\n")
    res = node.pct.run_script(run, lambda _: None)
    assert res.tail == (*(f"line {i}" for i in range(12, 31)), "no newline at end")
    lines = run.log_path.read_text().splitlines()
    assert lines[0] == "earlier" and lines[1] == "[ct951 feature] line 1" and len(lines) == 32


def test_exit_status_and_tail(sshd, node, tmp_path):
    sshd.make_ct(952)
    res = node.pct.run_script(make_run(tmp_path, 952, 'echo "about to fail"\necho "E: no such package" >&2\nexit 7\n'), Lines())
    assert res.exit_status == 7 and not res.timed_out
    assert res.tail == ("about to fail", "E: no such package")
    res = node.pct.run_script(make_run(tmp_path, 952, "false\necho unreachable\n"), Lines())
    assert res.exit_status == 1 and res.tail == ()


def test_timeout_kills_the_script(sshd, node, tmp_path):
    sshd.make_ct(953)
    marker = tmp_path / "still-running"
    run = make_run(tmp_path, 953, f"echo started\nsleep 6 & wait\ntouch {marker}\n", timeout_s=1)
    out = Lines()
    start = time.monotonic()
    res = node.pct.run_script(run, out)
    elapsed = time.monotonic() - start
    assert res.timed_out and res.exit_status != 0
    assert elapsed < 5, f"took {elapsed:.1f}s: the script was not stopped at its timeout"
    assert out == ["[ct953 feature] started"]
    time.sleep(max(0.0, start + 7.5 - time.monotonic()))
    assert not marker.exists(), "the script kept running after its timeout"


def test_missing_container(sshd, node, tmp_path):
    with pytest.raises(PhoenixError, match=r"CT 959 on node pve-test .*'nodes/pve1/lxc/959.conf' does not exist"):
        node.pct.run_script(make_run(tmp_path, 959, "true\n"), Lines())


# ------------------------------------------------------------------ quoting


def test_quoting_of_names_values_and_paths(sshd, node, tmp_path):
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
    res = node.pct.run_script(run, out)
    assert res.exit_status == 0, out
    prefix = f"[ct954 {name}] "
    assert out == [prefix + x for x in (secret + "\n" + nasty + "\n").split("\n")[:-1]]
    assert json.loads(sshd.guest(954, CONTEXT_JSON).read_text()) == {"weird": nasty, "list": [nasty, "b"]}
    assert sshd.guest(954, f"/opt/phoenix/run/{name}").read_bytes() == run.script.read_bytes()
    assert sshd.guest(954, f"{SECRETS_DIR}/odd name $(x)").read_text() == secret
    assert not sentinel.exists()
    assert not [p for base in (Path.home(), sshd.root, tmp_path) for p in base.rglob("pwned")]


def test_data_files_are_delivered_with_the_script(sshd: SshServer, node: SshNode, tmp_path):
    """The vllm feature's lock goes into /opt/phoenix/files with the script (read-only for others, 0644)."""
    sshd.make_ct(951)
    lock = tmp_path / "vllm-0.10.1.1-py312.txt"
    lock.write_text("vllm==0.10.1.1 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    # the stand-in pct roots the guest's paths in a directory: found next to the lib, as /opt/phoenix/files is
    run = make_run(tmp_path, 951, 'phx_log "$(head -c 14 "${PHOENIX_LIB%/lib/*}/files/vllm-0.10.1.1-py312.txt")"\n',
                   files=((lock.name, lock),))
    out = Lines()
    assert node.pct.run_script(run, out).exit_status == 0
    assert out == ["[ct951 feature] vllm==0.10.1.1"]
    delivered = sshd.guest(951, FILES_DIR) / lock.name
    assert delivered.read_bytes() == lock.read_bytes() and stat.S_IMODE(delivered.stat().st_mode) == 0o644
    assert stat.S_IMODE(delivered.parent.stat().st_mode) == 0o755
    with pytest.raises(PhoenixError, match="data file name"):
        node.pct.run_script(make_run(tmp_path, 951, "true\n", files=(("../x", lock),)), Lines())


def test_bad_file_names_refused(sshd, node, tmp_path):
    with pytest.raises(PhoenixError, match="cannot be a file name"):
        node.pct.run_script(make_run(tmp_path, 955, "true\n", name="../etc/passwd"), Lines())
    with pytest.raises(PhoenixError, match="cannot be file names"):
        node.pct.run_script(make_run(tmp_path, 955, "true\n", secrets={"a/b": "x"}), Lines())


def test_pct_set_quoting(sshd, node, tmp_path):
    sentinel = tmp_path / "pwned"
    sshd.make_ct(956)
    opts = {"description": NASTY.format(sentinel=sentinel), "tags": "gpu;vllm", "dev0": "/dev/nvidia0,gid=44",
            "features": "nesting=1,keyctl=1", "mp0": "/tank/models with space,mp=/models"}
    node.pct.set(956, opts)
    assert sshd.commands()[-1] == ["set", "956", *[w for k, v in opts.items() for w in (f"--{k}", v)]]
    assert json.loads(sshd.guest(956, "pct-set.json").read_text()) == opts
    assert not sentinel.exists()


def test_pct_set_failure_shows_stderr(sshd, node):
    sshd.make_ct(957)
    with pytest.raises(PhoenixError, match=r"pct set 957.*exit 255.*Unknown option: bogus"):
        node.pct.set(957, {"bogus": "1"})
    with pytest.raises(PhoenixError, match="does not exist"):
        node.pct.set(958, {"cores": "2"})
    with pytest.raises(PhoenixError, match="invalid pct option"):
        node.pct.set(957, {"--cores 2; reboot": "1"})


# ------------------------------------------------------------------ secrets


def test_secret_values_go_nowhere_but_the_guest_file(sshd, node, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "hf_LEAKCHECK_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:24]
    sshd.make_ct(960)
    run = make_run(tmp_path, 960, 'sha256sum "$PHOENIX_SECRETS/hf_token" | cut -d" " -f1\nls -l "$PHOENIX_SECRETS"\n',
                   name="docker", secrets={"hf_token": secret, "docker_token": secret + "-2"})
    out = Lines()
    assert node.pct.run_script(run, out).exit_status == 0
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


def test_concurrent_runs_share_one_connection(sshd, tmp_path):
    ctids = [961, 962, 963, 964]
    for c in ctids:
        sshd.make_ct(c)
    before = sshd.accepted()
    node: Node = sshd.node()
    results: dict[int, object] = {}
    outputs = {c: Lines() for c in ctids}
    barrier = tmp_path / "barrier"   # each script waits (60 s at most) until all four have started: they overlap or fail
    barrier.mkdir()
    wait = (f'touch {barrier}/{{c}}; n=0; while [ "$(find {barrier} -type f | wc -l)" -lt {len(ctids)} ] && '
            '[ "$n" -lt 600 ]; do sleep 0.1; n=$((n + 1)); done\n'
            f'[ "$(find {barrier} -type f | wc -l)" -ge {len(ctids)} ]\n')
    runs = {c: make_run(tmp_path, c, wait.format(c=c) + f'for i in 1 2 3 4 5; do echo "ct{c} $i"; done\n'
                        f'[ "$(cat "$PHOENIX_SECRETS/token")" = "tok{c}" ]\n', secrets={"token": f"tok{c}"}) for c in ctids}

    def work(c):
        try:
            results[c] = node.pct.run_script(runs[c], outputs[c])
        except Exception as e:  # pragma: no cover - reported below
            results[c] = e

    threads = [threading.Thread(target=work, args=(c,)) for c in ctids]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    node.close()
    for c in ctids:
        assert getattr(results[c], "exit_status", results[c]) == 0
        assert outputs[c] == [f"[ct{c} feature] ct{c} {i}" for i in range(1, 6)]
        assert runs[c].log_path.read_text().splitlines() == outputs[c]
    assert sshd.accepted() - before == 1, "all threads must share one SSH connection"


# ------------------------------------------------------------------ remove_secrets (before a template snapshot)


def test_remove_secrets_empties_the_directory_and_keeps_the_rest(sshd, node, tmp_path):
    sshd.make_ct(970)
    run = make_run(tmp_path, 970, "true\n", secrets={"hf_token": "hf_x", "docker_token": "dt_y"})
    assert node.pct.run_script(run, Lines()).exit_status == 0
    secrets = sshd.guest(970, SECRETS_DIR)
    (secrets / ".hidden").write_text("h")
    (secrets / "sub dir").mkdir()
    (secrets / "sub dir" / "nested").write_text("n")
    (secrets / "-rf").write_text("dash")
    assert len(list(secrets.iterdir())) == 5
    node.pct.remove_secrets(970)
    assert secrets.is_dir() and list(secrets.iterdir()) == []
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert sshd.guest(970, CONTEXT_JSON).is_file() and sshd.guest(970, LIB_PATH).is_file()
    assert sshd.guest(970, run.guest_path).is_file()
    argv = sshd.commands()[-1]
    assert argv[:5] == ["exec", "970", "--", "sh", "-c"] and argv[-1] == SECRETS_DIR
    node.pct.remove_secrets(970)                       # again: nothing left to remove, still fine


def test_remove_secrets_without_the_directory(sshd, node):
    ct = sshd.make_ct(971)
    node.pct.remove_secrets(971)                       # no /etc/phoenix at all
    assert list(ct.iterdir()) == []
    sshd.guest(971, "/etc/phoenix").mkdir(parents=True)
    node.pct.remove_secrets(971)                       # /etc/phoenix without secrets/
    assert not sshd.guest(971, SECRETS_DIR).exists()


def test_remove_secrets_in_a_missing_container(sshd, node):
    with pytest.raises(PhoenixError, match=r"could not remove the secrets in /etc/phoenix/secrets in CT 972 on node pve-test "
                                           r"\(exit 255\): .*'nodes/pve1/lxc/972.conf' does not exist"):
        node.pct.remove_secrets(972)
