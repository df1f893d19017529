"""`phoenix VERB ...` (and `python -m phoenix`): the seeds' verbs over the project's doit tasks.

Verbs that build run doit's own main in this process, on the dodo.py of the project (the current directory, or
--project), so `phoenix create 950` and `doit ct950` are the same run, with the same output, summary and
.cache/last-run.json. The seeds' spellings are accepted too: `--setup-hypervisor`, `<CTID>` alone,
`--create-vm NAME`, `--start-vm ID`, `--stop-vm ID`, `--delete-vm ID`.

Exit codes: 0 done; 1 a task failed or an operation was refused; 2 bad configuration or usage; 3 a bad doit
command line; 130 interrupted.
"""

from __future__ import annotations

import argparse
import difflib
import os
import runpy
import sys
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import Any, TextIO

from ..errors import PhoenixError, SettingsError
from .graph import CHANGED_HELP, FORMAT_HELP, FORMATS, FROM_HELP

VERBS = ("create", "setup-hypervisor", "sync", "LetsGo", "plan", "graph", "status", "start", "stop", "delete", "adopt")
LEGACY = {"--setup-hypervisor": "setup-hypervisor", "--create-vm": "create", "--start-vm": "start", "--stop-vm": "stop",
          "--delete-vm": "delete"}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="phoenix", description="Build a Proxmox VE estate from declarative files "
                                  "(the seeds' verbs over the doit tasks of this project).")
    top.add_argument("--project", "-C", type=Path, default=Path("."), help="the project (with dodo.py); default: here")
    verbs = top.add_subparsers(dest="verb", metavar="VERB")

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help, description=help)
        if name in ("create", "setup-hypervisor", "sync", "LetsGo"):
            p.add_argument("-n", "--jobs", type=int, default=1, help="build independent resources at the same time")
        return p

    verb("create", "build these guests and whatever they need (ID, name or task; doit TASK...)").add_argument(
        "targets", nargs="+", metavar="ID")
    verb("setup-hypervisor", "set up the node itself: the host:* parts of the hypervisor config")
    verb("sync", "`sync portainer` (server, environments, every stack) or `sync stack NAME to ID`").add_argument(
        "what", nargs="+", metavar="WORD")
    verb("LetsGo", "everything: guests, then Portainer, then stacks (plain `doit`)")
    p = verb("plan", "what a run would do and why; changes nothing (doit plan)")
    p.add_argument("--steps", action="store_true", help="also the exact calls of each build")
    p.add_argument("targets", nargs="*", metavar="ID")
    p = verb("graph", "the estate as a picture: every task, its state and why, and what it is cloned from, deployed to "
             "or needs (doit plan --graph); changes nothing")
    p.add_argument("--format", choices=FORMATS, default="mermaid", help=FORMAT_HELP)
    p.add_argument("--changed", action="store_true", help=CHANGED_HELP)
    p.add_argument("--from", dest="start", metavar="ID", help=FROM_HELP)
    p.add_argument("targets", nargs="*", metavar="ID", help="only these and what they hang from")
    verb("status", "every guest and task: kind, parent, state, address, up to date or why not").add_argument(
        "--json", action="store_true", help="as JSON")
    for name in ("start", "stop"):
        verb(name, f"{name} a Phoenix guest").add_argument("target", metavar="ID")
    p = verb("delete", "destroy a Phoenix guest (refuses while guests are cloned from it, and a protected one)")
    p.add_argument("target", metavar="ID")
    p.add_argument("--with-children", action="store_true", help="delete the Phoenix guests cloned from it first")
    p.add_argument("--yes", action="store_true", help="do not ask (required when not on a terminal)")
    verb("adopt", "hand a guest's Portainer environment and stacks (an earlier Phoenix's, or made by hand, under the "
         "config's names) to Phoenix: signed with its key, nothing removed; the next run brings them to the config"
         ).add_argument("target", metavar="ID")
    return top


def split(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the options before the verb: --project DIR, --help; the verb and what follows it)."""
    head: list[str] = []
    rest = list(argv)
    while rest and rest[0].startswith("-") and rest[0] not in LEGACY:
        word = rest.pop(0)
        head.append(word)
        if word in ("--project", "-C") and rest:
            head.append(rest.pop(0))
    return head, rest


def normalise(argv: list[str]) -> list[str]:
    """The seeds' spellings as verbs: `--create-vm X` -> `create X`, a bare `950` -> `create 950`."""
    head, rest = split(argv)
    if rest and rest[0] in LEGACY:
        rest[0] = LEGACY[rest[0]]
    elif len(rest) == 1 and rest[0].isdigit():
        rest = ["create", rest[0]]
    return head + rest


def suggest(argv: list[str]) -> str | None:
    """A hint for an unknown verb ('did you mean …')."""
    rest = split(argv)[1]
    first = rest[0] if rest else None
    if first is None or first in VERBS:
        return None
    close = difflib.get_close_matches(first, VERBS, n=1)
    return f"phoenix: unknown verb {first!r}" + (f"; did you mean {close[0]!r}?" if close else f"; verbs: {', '.join(VERBS)}")


def load(project: Path) -> tuple[Any, dict[str, Any]]:
    """The project's run, as its dodo.py makes it (configuration checked, nothing on the host touched)."""
    dodo = project / "dodo.py"
    if not dodo.is_file():
        raise PhoenixError(f"{dodo} not found: run phoenix in the project (beside dodo.py), or give --project DIR")
    namespace = runpy.run_path(str(dodo))
    from ..doitx import current

    return current.current(), namespace


def doit(namespace: dict[str, Any], args: list[str]) -> int:
    """doit's own main on the loaded dodo.py, as the `doit` command would run it."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    return int(DoitMain(ModuleTaskLoader(namespace), config_filenames=("pyproject.toml",)).run(args))


def ask_on(stdin: TextIO, stdout: TextIO) -> Any:
    if not stdin.isatty():
        return None

    def ask(question: str) -> bool:
        stdout.write(question)
        stdout.flush()
        return stdin.readline().strip().lower() in ("y", "yes")
    return ask


def run(args: argparse.Namespace, out: TextIO) -> int:
    from . import adopt, delete, doitverbs, power, status
    from .targets import resolve

    root = args.project.resolve()
    os.chdir(root)
    # stdout is the verb's answer alone (the picture, the status, JSON): notes on a config just validated go to stderr
    answers = args.verb in ("graph", "status", "start", "stop", "delete", "adopt")
    with redirect_stdout(sys.stderr) if answers else nullcontext():
        run_, namespace = load(root)
    jobs = ["-n", str(args.jobs)] if getattr(args, "jobs", 1) > 1 else []
    if args.verb == "create":
        return doit(namespace, [*jobs, *doitverbs.create(run_, args.targets)])
    if args.verb == "setup-hypervisor":
        return doit(namespace, [*jobs, *doitverbs.setup_hypervisor(run_)])
    if args.verb == "sync":
        return doit(namespace, [*jobs, *doitverbs.sync(run_, args.what)])
    if args.verb == "LetsGo":
        return doit(namespace, jobs)
    if args.verb == "plan":
        keys = doitverbs.create(run_, args.targets) if args.targets else []
        return doit(namespace, ["plan", *(["--steps"] if args.steps else []), *keys])
    if args.verb == "graph":
        from . import graph

        keys = doitverbs.create(run_, args.targets) if args.targets else []
        start = resolve(run_.resources, args.start).key if args.start else None
        return doit(namespace, graph.doit_args(args.format, args.changed, start, keys))
    run_.out = sys.stderr  # what the run says on the side (the target, notes); stdout is the verb's answer
    if args.verb == "status":
        out.write(status.render(status.rows(run_), args.json))
        return 0
    if args.verb in ("start", "stop"):
        out.write(power.power(run_, args.target, args.verb) + "\n")
        return 0
    if args.verb == "adopt":
        out.write("".join(f"phoenix: {line}\n" for line in adopt.adopt(run_, args.target)))
        return 0
    lines = delete.delete(run_, args.target, with_children=args.with_children, yes=args.yes, ask=ask_on(sys.stdin, out))
    out.write("".join(f"phoenix: {line}\n" for line in lines))
    return 0


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    argv = normalise(list(sys.argv[1:] if argv is None else argv))
    hint = suggest(argv)
    if hint:
        print(hint, file=sys.stderr)
        return 2
    args = parser().parse_args(argv)
    if args.verb is None:
        parser().print_help(out)
        return 2
    from .targets import UnknownTarget

    try:
        return run(args, out)
    except (UnknownTarget, SettingsError) as e:  # what was typed names nothing; settings refused before any write
        print(f"phoenix: {e}", file=sys.stderr)
        return 2
    except PhoenixError as e:
        print(f"phoenix: {e}", file=sys.stderr)
        return 1
