"""A stand-in for Proxmox's `pct`, run by the test sshd (through the `pct` wrapper the fixture writes).

It is honest about what it fakes and nothing more:

* a container is a directory $FAKEPCT_ROOT/ct/<ctid>/ (it exists when the directory does);
* guest paths under /etc/phoenix and /opt/phoenix are mapped into that directory: every argv word
  (including the text of `sh -c` scripts and `env NAME=value` words) has those prefixes rewritten;
  everything else runs on the host as it is — `timeout`, `sh`, `cat`, `mv` are the host's own;
* like `pct exec` (lxc-attach --clear-env) the command gets a clean environment, and stdin,
  stdout and stderr pass straight through;
* every invocation's argv is appended as one JSON line to $FAKEPCT_ROOT/commands.jsonl, so tests
  can inspect (and grep) every command line the node received.

Subcommands: exec, set (and `config`, to read back what set stored). Phoenix uses no `pct push`.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

ROOT = Path(os.environ["FAKEPCT_ROOT"])
GUEST_PREFIXES = ("/etc/phoenix", "/opt/phoenix")
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container": "lxc"}
# the options `pct set` accepts here: enough of the real list for the tests to hit both branches
KNOWN_OPTIONS = {"cores", "memory", "swap", "hostname", "description", "onboot", "tags", "features", "nameserver",
                 "searchdomain", "lock", "protection", "startup"} | {f"{p}{i}" for p in ("dev", "mp", "net") for i in range(10)}


def record(argv: list[str]) -> None:
    line = json.dumps({"pid": os.getpid(), "argv": argv}) + "\n"
    with open(ROOT / "commands.jsonl", "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line)


def fail(message: str, status: int = 255) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.exit(status)


def container(ctid: str) -> Path:
    if not ctid.isdigit():
        fail(f"400 Parameter verification failed.\nvmid: type check ('integer') failed - got '{ctid}'")
    d = ROOT / "ct" / ctid
    if not d.is_dir():
        fail(f"Configuration file 'nodes/pve1/lxc/{ctid}.conf' does not exist")
    return d


def guest(d: Path, word: str) -> str:
    for prefix in GUEST_PREFIXES:
        word = word.replace(prefix, f"{d}{prefix}")
    return word


def cmd_exec(args: list[str]) -> None:
    if len(args) < 3 or args[1] != "--":
        fail("usage: pct exec <vmid> -- <command> [args...]")
    d = container(args[0])
    argv = [guest(d, w) for w in args[2:]]
    os.chdir(d)
    try:
        os.execvpe(argv[0], argv, CLEAN_ENV)
    except OSError as e:
        fail(f"lxc-attach: {argv[0]}: {e.strerror}", 127)


def cmd_set(args: list[str]) -> None:
    if not args:
        fail("usage: pct set <vmid> [OPTIONS]")
    d = container(args[0])
    opts: dict[str, str] = {}
    rest = args[1:]
    while rest:
        key = rest.pop(0)
        if not key.startswith("--") or not rest:
            fail(f"400 unable to parse option\npct set <vmid> [OPTIONS]: bad argument {key!r}")
        if key[2:] not in KNOWN_OPTIONS:
            fail(f"Unknown option: {key[2:]}\n400 unable to parse option")
        opts[key[2:]] = rest.pop(0)
    conf = d / "pct-set.json"
    current = json.loads(conf.read_text()) if conf.exists() else {}
    conf.write_text(json.dumps({**current, **opts}, indent=1))


def cmd_config(args: list[str]) -> None:
    conf = container(args[0]) / "pct-set.json"
    sys.stdout.write(conf.read_text() if conf.exists() else "{}")


def main() -> None:
    argv = sys.argv[1:]
    record(argv)
    if not argv:
        fail("ERROR: no command specified")
    commands = {"exec": cmd_exec, "set": cmd_set, "config": cmd_config}
    if argv[0] not in commands:
        fail(f"ERROR: unknown command 'pct {argv[0]}'")
    commands[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
