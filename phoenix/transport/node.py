"""The Proxmox node as the core sees it: container operations, node facts, host-path checks (simulated or SSH).

Node is the interface (SimulatedNode in phoenix.transport.simulated, SshNode here); Containers is what its
`pct` attribute offers. SshNode does everything through one Shell, exposed as `.shell`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from ..errors import PhoenixError
from ..facts.node import NODE_FACTS_SCRIPT, NodeFacts, parse_node_facts
from .base import ExecResult, Output, ScriptRun
from .pct import Pct
from .shell import Shell, q

HOST_DIR = "/var/lib/phoenix/host"  # where a host set-up script and its context go on the node
FACTS_TIMEOUT_S = 60
PATHS_TIMEOUT_S = 60
# prints each argument that is not a directory (symlinks to one count as one), NUL-terminated
MISSING_DIRS_SCRIPT = 'for p in "$@"; do [ -d "$p" ] || printf "%s\\0" "$p"; done'


class Containers(Protocol):
    """Container operations (`pct`) on the node; Pct and SimulatedPct."""

    def run_script(self, run: ScriptRun, output: Output) -> ExecResult:
        """Deliver context, secrets, lib and script into the guest, run it, stream its lines to output."""
        ...

    def set(self, vmid: int, options: dict[str, str]) -> None:
        """`pct set <vmid> --key value ...`, for settings only root@pam may make."""
        ...

    def remove_secrets(self, vmid: int) -> None:
        """Remove every file under the guest's /etc/phoenix/secrets (the container must run)."""
        ...


@dataclass(frozen=True)
class DirOwner:
    """A host directory's owner as the node's `stat` says, and whether it holds anything."""

    path: str
    uid: int
    gid: int
    empty: bool


class Node(Protocol):
    """What the core needs from the node beyond the API; safe to share between doit threads."""

    simulated: bool

    @property
    def pct(self) -> Containers:
        """Container operations."""
        ...

    def facts(self) -> NodeFacts:
        """Driver version and NVIDIA device nodes of the node."""
        ...

    def missing_paths(self, paths: Sequence[str]) -> list[str]:
        """Those of the absolute host paths that are not existing directories on the node, in the order given."""
        ...

    def make_dirs(self, paths: Sequence[str], owner: int | None = None) -> None:
        """Create these host directories (with their parents); chown the ones made here to owner:owner if given."""
        ...

    def dir_owners(self, paths: Sequence[str]) -> dict[str, DirOwner]:
        """The owner of each of these host paths that is a directory, and whether it is empty (one read)."""
        ...

    def give_dirs(self, paths: Sequence[str], owner: int) -> None:
        """chown owner:owner each of these host directories, each checked empty first (else PhoenixError, none changed
        from that one on)."""
        ...

    def run_on_node(self, run: ScriptRun, output: Output) -> ExecResult:
        """Put context, lib and script under /var/lib/phoenix/host on the node itself and run it there, as root."""
        ...

    def put_snippets(self, storage: str, directory: str, files: dict[str, bytes], prefix: str = "",
                     keep_vmids: Sequence[int] = ()) -> None:
        """Write each file into directory (a storage's snippets) under a temporary name, then rename it; then remove
        the other files whose names start with prefix (a guest's older snippets) and, given keep_vmids, every
        phoenix-<vmid>-*.yml of a VMID not among them (snippets no VM refers to any more)."""
        ...

    def check(self) -> None:
        """Reach the node and log in, running nothing: PhoenixError saying what to fix when that is not possible."""
        ...

    def check_writable(self, directory: str) -> None:
        """Files can be put into directory as put_snippets and send put them (SFTP on a real node): PhoenixError
        saying why not."""
        ...

    def fetch(self, path: str, sink: Callable[[bytes], object]) -> int:
        """Stream the file at the absolute path on the node to sink, block by block; the bytes read."""
        ...

    def send(self, path: str, source: BinaryIO, mode: int = 0o644) -> None:
        """Write what source reads (streamed) to the absolute path on the node, atomically (whole or not at all)."""
        ...

    def remove(self, path: str) -> None:
        """Remove a file on the node (nothing if it is gone)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def require_absolute(paths: Sequence[str]) -> None:
    """PhoenixError naming the paths that are not absolute (or hold a NUL)."""
    bad = [p for p in paths if not p.startswith("/") or "\0" in p]
    if bad:
        raise PhoenixError(f"host path(s) {', '.join(map(repr, bad))} must be absolute paths (without NUL)")


# renames each written .NAME.phx-tmp to NAME in $1, then removes the other files named $2* (a guest's old snippets)
SNIPPETS_SCRIPT = ('dir=$1; prefix=$2; ids=$3; shift 3; cd -- "$dir" || exit 1; for n in "$@"; do '
                   'mv -f -- ".$n.phx-tmp" "$n" || exit 1; done; if [ -n "$prefix" ]; then for f in "$prefix"*; do '
                   '[ -f "$f" ] || continue; keep=; for n in "$@"; do [ "$f" = "$n" ] && keep=1; done; [ -n "$keep" ] '
                   '|| rm -f -- "$f"; done; fi; [ -n "$ids" ] || exit 0; for f in phoenix-*-*.yml; do [ -f "$f" ] || '
                   'continue; id=${f#phoenix-}; id=${id%%-*}; case $id in *[!0-9]*|"") continue;; esac; '
                   'case " $ids " in *" $id "*) ;; *) rm -f -- "$f";; esac; done')

# makes each missing directory; only those it made are given to the owner ($1; "-" for none)
MAKE_DIRS_SCRIPT = ('owner=$1; shift; for p in "$@"; do [ -d "$p" ] && continue; mkdir -p -- "$p" || exit 1; '
                    '[ "$owner" = - ] || chown -- "$owner:$owner" "$p" || exit 1; done')


# prints path NUL uid:gid NUL empty|full NUL for each argument that is a directory; fails if one cannot be read
DIR_OWNERS_SCRIPT = ('for p in "$@"; do [ -d "$p" ] || continue; o=$(stat -L -c %u:%g -- "$p") || exit 1; '
                     'n=$(find "$p/" -mindepth 1 -maxdepth 1 -print -quit) || exit 1; e=empty; [ -z "$n" ] || e=full; '
                     'printf "%s\\0%s\\0%s\\0" "$p" "$o" "$e"; done')

# gives each directory to $1 (uid:gid), each checked empty right before: a non-empty one stops it, unchanged
GIVE_DIRS_SCRIPT = ('owner=$1; shift; for p in "$@"; do [ -d "$p" ] || { echo "$p is not a directory" >&2; exit 1; }; '
                    'n=$(find "$p/" -mindepth 1 -maxdepth 1 -print -quit) || exit 1; [ -z "$n" ] || '
                    '{ echo "$p is not empty any more: left as it is" >&2; exit 1; }; chown -- "$owner" "$p" || exit 1; done')


def dir_owners_command(paths: Sequence[str]) -> str:
    """The one command line that prints the owner and emptiness of those of `paths` that are directories (pure)."""
    require_absolute(paths)
    return q(["sh", "-c", DIR_OWNERS_SCRIPT, "sh", *paths])


def parse_dir_owners(stdout: bytes, asked: Sequence[str]) -> dict[str, DirOwner]:
    """The output of dir_owners_command; PhoenixError for output that is not what it prints."""
    fields = [f.decode("utf-8", "surrogateescape") for f in stdout.split(b"\0")[:-1]]
    if len(fields) % 3:
        raise PhoenixError(f"reading host directory owners printed {stdout[-200:]!r}: not path, uid:gid, empty|full")
    out: dict[str, DirOwner] = {}
    for path, owner, state in zip(fields[0::3], fields[1::3], fields[2::3], strict=True):
        uid, _, gid = owner.partition(":")
        if path not in asked or not uid.isdigit() or not gid.isdigit() or state not in ("empty", "full"):
            raise PhoenixError(f"reading host directory owners printed {path!r} {owner!r} {state!r}: not what was asked")
        out[path] = DirOwner(path, int(uid), int(gid), state == "empty")
    return out


def give_dirs_command(paths: Sequence[str], owner: int) -> str:
    require_absolute(paths)
    return q(["sh", "-c", GIVE_DIRS_SCRIPT, "sh", f"{int(owner)}:{int(owner)}", *paths])


def make_dirs_command(paths: Sequence[str], owner: int | None) -> str:
    """The one command line that creates the missing directories among `paths` (pure; paths quoted)."""
    require_absolute(paths)
    return q(["sh", "-c", MAKE_DIRS_SCRIPT, "sh", "-" if owner is None else int(owner), *paths])


def missing_paths_command(paths: Sequence[str]) -> str:
    """The one command line that prints those of `paths` that are not directories (pure; paths quoted)."""
    require_absolute(paths)
    return q(["sh", "-c", MISSING_DIRS_SCRIPT, "sh", *paths])


def parse_missing_paths(stdout: bytes, asked: Sequence[str]) -> list[str]:
    """The output of missing_paths_command as a list, in the order asked; PhoenixError if it names a path not asked."""
    printed = [p.decode("utf-8", "surrogateescape") for p in stdout.split(b"\0")[:-1]]
    unknown = set(printed) - set(asked)
    if unknown:
        raise PhoenixError(f"checking host paths printed paths that were not asked: {sorted(unknown)!r}")
    missing = set(printed)
    return [p for p in asked if p in missing]


class SshNode:
    """Node over a Shell (an SshShell) to the Proxmox node; safe to share between threads."""

    simulated = False

    def __init__(self, shell: Shell, node: str, host_dir: str = HOST_DIR):
        """host_dir: where a host script and its context go on the node (tests give a directory of their own)."""
        self.shell = shell
        self.node = node
        self.host_dir = host_dir
        self.pct = Pct(shell, node)

    def facts(self) -> NodeFacts:
        done = self.shell.execute(q(["sh", "-c", NODE_FACTS_SCRIPT]), timeout_s=FACTS_TIMEOUT_S)
        if done.exit_status != 0:
            detail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()[-2000:]
            status = "timed out" if done.timed_out else f"exit {done.exit_status}"
            raise PhoenixError(f"reading node facts on node {self.node} failed ({status}): {detail or 'no output'}")
        return parse_node_facts(done.stdout.decode("utf-8", "replace"))

    def missing_paths(self, paths: Sequence[str]) -> list[str]:
        asked = list(dict.fromkeys(paths))
        if not asked:
            return []
        return parse_missing_paths(self._paths_command(missing_paths_command(asked), "checking host paths"), asked)

    def make_dirs(self, paths: Sequence[str], owner: int | None = None) -> None:
        if not paths:
            return
        self._paths_command(make_dirs_command(paths, owner), f"creating host directories {', '.join(paths)}")

    def dir_owners(self, paths: Sequence[str]) -> dict[str, DirOwner]:
        asked = list(dict.fromkeys(paths))
        if not asked:
            return {}
        return parse_dir_owners(self._paths_command(dir_owners_command(asked),
                                                    "reading the owners of host directories"), asked)

    def give_dirs(self, paths: Sequence[str], owner: int) -> None:
        if not paths:
            return
        self._paths_command(give_dirs_command(paths, owner),
                            f"giving host directories {', '.join(paths)} to {owner}:{owner}")

    def _paths_command(self, command: str, what: str) -> bytes:
        """A short command about host paths run on the node; its stdout, or PhoenixError naming WHAT and the output."""
        done = self.shell.execute(command, timeout_s=PATHS_TIMEOUT_S)
        if done.exit_status != 0:
            detail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()[-2000:]
            status = "timed out" if done.timed_out else f"exit {done.exit_status}"
            raise PhoenixError(f"{what} on node {self.node} failed ({status}): {detail or 'no output'}")
        return done.stdout

    def run_on_node(self, run: ScriptRun, output: Output) -> ExecResult:
        import threading
        import time

        from ..context import to_env, to_json
        from .pct import stream

        start = time.monotonic()
        root = self.host_dir
        context = f"{root}/context.json"
        files = [(context, 0o644, to_json(dict(run.context)).encode()), (f"{root}/context.env", 0o644,
                                                                     to_env(dict(run.context)).encode()),
                 (f"{root}/lib/phoenix-common.sh", 0o644, run.lib.read_bytes()),
                 (f"{root}/run/{run.name}", 0o755, run.script.read_bytes())]
        self.make_dirs([self.host_dir, f"{root}/lib", f"{root}/run"])
        for path, mode, data in files:
            self.shell.put_file(path, data, mode)
        env = {"PHOENIX_CONTEXT": context, "PHOENIX_ENV": f"{root}/context.env",
               "PHOENIX_LIB": f"{root}/lib/phoenix-common.sh"}
        return stream(self.shell, [], env, f"{root}/run/{run.name}", run, output, start, threading.Lock())

    def put_snippets(self, storage: str, directory: str, files: dict[str, bytes], prefix: str = "",
                     keep_vmids: Sequence[int] = ()) -> None:
        require_absolute([directory])
        for name, data in files.items():
            self.shell.put_file(f"{directory}/.{name}.phx-tmp", data, 0o600)
        ids = " ".join(str(int(v)) for v in keep_vmids)
        done = self.shell.execute(q(["sh", "-c", SNIPPETS_SCRIPT, "sh", directory, prefix, ids, *files]),
                                  timeout_s=PATHS_TIMEOUT_S)
        if done.exit_status != 0:
            detail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()[-2000:]
            raise PhoenixError(f"writing snippets into {directory} (storage {storage}) on node {self.node} failed "
                               f"(exit {done.exit_status}): {detail or 'no output'}")

    def check(self) -> None:
        self.shell.check()

    def check_writable(self, directory: str) -> None:
        require_absolute([directory])
        self._files().check_writable(directory)

    def fetch(self, path: str, sink: Callable[[bytes], object]) -> int:
        require_absolute([path])
        return self._files().get_stream(path, sink)

    def send(self, path: str, source: BinaryIO, mode: int = 0o644) -> None:
        require_absolute([path])
        self._files().put_stream(path, source, mode)

    def remove(self, path: str) -> None:
        require_absolute([path])
        done = self.shell.execute(q(["rm", "-f", "--", path]), timeout_s=PATHS_TIMEOUT_S)
        if done.exit_status != 0:
            detail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()[-2000:]
            raise PhoenixError(f"removing {path} on node {self.node} failed: {detail or 'no output'}")

    def _files(self) -> Any:
        """The shell's streamed file transfer (SshShell's SFTP)."""
        if not hasattr(self.shell, "get_stream"):
            raise PhoenixError("this node's shell cannot stream files (SFTP is needed to copy archives)")
        return self.shell

    def close(self) -> None:
        self.shell.close()

    def __enter__(self) -> SshNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
