"""Executing a build's steps: the calls to Proxmox and to the node, in order, each timed on the run's output.

The builder gets a narrow context (the API, the node, the run's view of the host, clone turns, output,
secrets, log files); it never sees the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ScriptFailed
from .heartbeat import Heartbeat, interval_from_env
from .steps import (
    AgentRun,
    AgentWait,
    Call,
    CopyLayer,
    DeployStack,
    HostRecorded,
    MakeDirs,
    NodeScript,
    NodeSet,
    NoteHost,
    PortainerCheck,
    PortainerEnv,
    PortainerToken,
    PutSnippets,
    RemoveNodeFile,
    RemoveSecrets,
    RemoveStack,
    RestartIfPending,
    SaveToken,
    Script,
    SendFile,
    Step,
)
from .transport.base import ScriptRun

if TYPE_CHECKING:
    from .clones import CloneTurns
    from .hostview import HostView
    from .portainer.client import Portainer
    from .portainer.target import PortainerTarget
    from .pve.client import Pve
    from .transport.node import Node


@dataclass
class BuildContext:
    pve: Pve
    node: Node
    view: HostView
    clones: CloneTurns[str]
    say: Callable[[str], None]
    secrets: Callable[[tuple[str, ...], tuple[str, ...]], dict[str, str]]  # (names, required) -> values
    log_path: Callable[[str], Path]
    before_record: Callable[[], None] = lambda: None  # a last check before a build is recorded (the run's lease)
    before_write: Callable[[], None] = lambda: None   # before every step (the lease still held: no request)
    portainer: Callable[[], Portainer] | None = None  # a client with Phoenix's token (made on use)
    portainer_target: Callable[[], PortainerTarget] | None = None
    admin_password: Callable[[], str] | None = None
    damaged: Callable[[Path], None] = lambda _: None   # an archive found damaged while sent (the store rehashes it)
    nodes: Callable[[str], Node] | None = None         # any member's shell operations (a copy to another member)
    spool: Path | None = None                          # where an archive moved between members is kept meanwhile
    heartbeat_s: float = field(default_factory=interval_from_env)  # a line at least this often while a step is silent


class Builder:
    """Runs the steps of one resource's build."""

    def __init__(self, ctx: BuildContext, key: str):
        self.ctx, self.key = ctx, key
        self._beat: Heartbeat | None = None

    def say(self, line: str) -> None:
        """A line of the step's output (a script's): the run's output, and the heartbeat knows the step is not silent."""
        if self._beat is not None:
            self._beat.touch()
        self.ctx.say(line)

    @contextmanager
    def timed(self, what: str) -> Iterator[None]:
        """`ct950  clone from ct920@vllm-base-snapshot  0.41s` once the step is done (or FAILED after …); while it is
        silent, a heartbeat line at least every heartbeat_s."""
        t0 = time.monotonic()
        outer = self._beat
        try:
            with Heartbeat(self.ctx.say, f"{self.key:<6}", what, self.ctx.heartbeat_s) as self._beat:
                yield
        except BaseException:
            self.ctx.say(f"{self.key:<6} {what}  FAILED after {time.monotonic() - t0:.2f}s")
            raise
        finally:
            self._beat = outer
        self.ctx.say(f"{self.key:<6} {what}  {time.monotonic() - t0:.2f}s")

    def run(self, steps: list[Step]) -> None:
        for step in steps:
            self.ctx.before_write()
            if isinstance(step, RestartIfPending):
                self.restart_if_pending(step)
                continue
            if isinstance(step, Call) and step.records:
                self.ctx.before_record()
            if isinstance(step, Call) and step.clone:
                with self.ctx.clones.turn(self.key), self.timed(step.what):
                    self.execute(step)
                continue
            simulated = isinstance(step, Script | AgentRun | NodeScript) and getattr(self.ctx.node, "simulated", False)
            with self.timed(step.what + (" (simulated)" if simulated else "")):
                self.execute(step)

    def execute(self, step: Step) -> None:
        ctx = self.ctx
        if isinstance(step, Call):
            ctx.pve.run(step.method, step.path, task_timeout=step.timeout, idempotent=step.idempotent,
                        retry_locked=step.retry_locked, **step.params)
            if step.then is not None:
                ctx.view.apply(step.then)
        elif isinstance(step, NodeSet):
            ctx.node.pct.set(step.vmid, dict(step.options))
        elif isinstance(step, MakeDirs):
            if step.paths:
                ctx.node.make_dirs(step.paths, step.owner)
            if step.give and step.owner is not None:
                ctx.node.give_dirs(step.give, step.owner)
                self.ctx.say(f"{self.key}: gave the empty host directories {', '.join(step.give)} to "
                             f"{step.owner}:{step.owner}, the container's root (they were owned outside its id map)")
        elif isinstance(step, RemoveSecrets):
            ctx.node.pct.remove_secrets(step.vmid)
        elif isinstance(step, Script):
            self.script(step)
        elif isinstance(step, NodeScript):
            self.node_script(step)
        elif isinstance(step, SaveToken):
            self.save_token(step)
        elif isinstance(step, NoteHost):
            self.note_host(step)
        elif isinstance(step, PutSnippets):
            ctx.node.put_snippets(step.storage, step.directory, dict(step.files), step.prefix, step.keep_vmids)
        elif isinstance(step, AgentWait):
            from .agent import GuestAgent

            GuestAgent(ctx.pve, step.node, step.vmid).wait_ready(step.timeout)
        elif isinstance(step, AgentRun):
            self.agent_run(step)
        elif isinstance(step, SendFile):
            self.send_file(step)
        elif isinstance(step, RemoveNodeFile):
            ctx.node.remove(step.path)
        elif isinstance(step, CopyLayer):
            from .layercopy import copy_layer

            assert ctx.nodes is not None and ctx.spool is not None
            copy_layer(step, ctx.pve, ctx.view, ctx.nodes, ctx.spool)
        elif isinstance(step, PortainerToken | PortainerCheck | PortainerEnv | DeployStack | RemoveStack):
            from .portainer import deploy

            assert self.ctx.portainer is not None and self.ctx.admin_password is not None
            deploy.execute(step, self.ctx.portainer, self.ctx.view, self.ctx.admin_password)
        else:  # pragma: no cover - every step type is handled above
            raise TypeError(f"unknown step {step!r}")

    def script(self, step: Script) -> None:
        log = self.ctx.log_path(self.key)
        run = ScriptRun(step.vmid, step.layer, step.name, step.path, step.lib, dict(step.context),
                        self.ctx.secrets(step.secrets, step.required), step.timeout, log, step.files)
        result = self.ctx.node.pct.run_script(run, self.say)
        tail = "\n".join(f"    | {t}" for t in result.tail)
        if result.timed_out:
            raise ScriptFailed(f"{self.key}: {step.what} timed out after {step.timeout:.0f}s; last output:\n{tail}")
        if result.exit_status != 0:
            raise ScriptFailed(f"{self.key}: {step.what} exited with status {result.exit_status}; last output:\n{tail}"
                               f"\n  full log: {log}")

    def agent_run(self, step: AgentRun) -> None:
        """Files, then the command, through the guest agent; its output into the layer's log and on the run's."""
        from .agent import GuestAgent

        agent = GuestAgent(self.ctx.pve, step.node, step.vmid)
        for path, mode, data in step.files:
            agent.write_file(path, data)
            if mode != 0o644:
                agent.run(["chmod", f"{mode:o}", path], 60)
        if step.secrets:  # into a 0700 directory, each file 0600; values never in argv or a log
            values = self.ctx.secrets(step.secrets, step.required)
            agent.run(["install", "-d", "-m", "0700", step.secrets_dir], 60)
            for name, value in values.items():
                target = f"{step.secrets_dir}/{name}"
                agent.run(["sh", "-c", 'umask 077 && : > "$1"', "sh", target], 60)
                agent.write_file(target, value.encode())
                agent.run(["chmod", "600", target], 60)
        done = agent.run(list(step.argv), step.timeout)
        log = self.ctx.log_path(self.key)
        lines = [f"[{step.layer}] {line}" for line in (done.out + done.err).splitlines()]
        with log.open("a", encoding="utf-8") as f:
            f.write(f"[{step.layer}] $ {' '.join(step.argv)}\n" + "".join(line + "\n" for line in lines))
        for line in lines[-20:]:
            self.ctx.say(line)
        if done.truncated:
            self.ctx.say(f"[{step.layer}] (the guest agent cut the output at 16 MiB: out-truncated)")
        tail = "\n".join(f"    | {t}" for t in lines[-30:])
        if done.timed_out:
            raise ScriptFailed(f"{self.key}: {step.what} timed out after {step.timeout:.0f}s in VM {step.vmid}; "
                               f"full log: {log}")
        if done.exitcode in step.warn_exit:
            self.ctx.say(f"{self.key}: WARNING: {step.what} exited with status {done.exitcode}:\n{tail}")
        elif done.exitcode != 0:
            shown = ""
            if step.show_on_failure:
                more = agent.run(["tail", "-n", "40", step.show_on_failure], 60)
                shown = f"\n  {step.show_on_failure}:\n" + "\n".join(f"    | {t}" for t in more.out.splitlines())
            raise ScriptFailed(f"{self.key}: {step.what} exited with status {done.exitcode} in VM {step.vmid}; "
                               f"last output:\n{tail}{shown}\n  full log: {log}")

    def node_script(self, step: NodeScript) -> None:
        log = self.ctx.log_path(self.key)
        run = ScriptRun(0, step.layer, step.name, step.path, step.lib, dict(step.context), {}, step.timeout, log)
        result = self.ctx.node.run_on_node(run, self.say)
        tail = "\n".join(f"    | {t}" for t in result.tail)
        if result.timed_out or result.exit_status != 0:
            how = f"timed out after {step.timeout:.0f}s" if result.timed_out else f"exited with status {result.exit_status}"
            raise ScriptFailed(f"{self.key}: {step.what} {how} on the node; last output:\n{tail}\n  full log: {log}")

    def save_token(self, step: SaveToken) -> None:
        """The token's secret goes from the API's answer straight into its 0600 file."""
        from .secrets import write_secret

        path = f"access/users/{step.userid}/token/{step.tokenid}"
        if step.replace:
            self.ctx.pve.call("DELETE", path)
        answer = self.ctx.pve.call("POST", path, privsep=1, comment="made by Phoenix (host:access)")
        write_secret(step.file, str(answer["value"]))

    def send_file(self, step: SendFile) -> None:
        """Stream the file to the node, hashing what is read: a file changed since it was checked is removed there."""
        import hashlib

        from .errors import PhoenixError

        sha = hashlib.sha256()
        try:
            with step.source.open("rb") as f:
                class Hashing:
                    def read(self, n: int = -1) -> bytes:
                        block = f.read(n)
                        sha.update(block)
                        return block

                self.ctx.node.send(step.path, Hashing())  # type: ignore[arg-type]
        except OSError as e:
            raise PhoenixError(f"cannot read {step.source}: {e.strerror}") from None
        if sha.hexdigest() != step.sha256:
            self.ctx.node.remove(step.path)
            self.ctx.damaged(step.source)
            raise PhoenixError(f"{step.source} changed since it was checked (its sha256 no longer matches its manifest); "
                               "refusing to restore from it: run again to bake the layer")

    def note_host(self, step: NoteHost) -> None:
        """Read the notes, add this part's record, write them back with the digest read (again if another changed them)."""
        from .errors import PhoenixError
        from .facts.node import join_notes, split_notes
        from .pve.client import ApiError

        path = f"nodes/{step.node}/config"
        for _attempt in range(5):
            config = self.ctx.pve.get(path)
            user, record = split_notes(config.get("description"))
            record[step.key] = {"identity": step.identity, "inputs": dict(step.inputs)}
            try:
                self.ctx.pve.run("PUT", path, description=join_notes(user, record), digest=config.get("digest", ""))
            except ApiError as e:
                if "modified" in str(e):
                    continue  # another part was recorded meanwhile: read again
                raise
            self.ctx.view.apply(HostRecorded(step.key, step.identity, step.inputs, step.node))
            return
        raise PhoenixError(f"could not record {step.key} in the node's notes: they kept changing under it; run again")

    def restart_if_pending(self, step: RestartIfPending) -> None:
        pending = [p for p in self.ctx.pve.get(f"{step.path}/pending") if "pending" in p or p.get("delete")]
        if pending or step.changed_root:
            keys = ", ".join(sorted({p["key"] for p in pending} | set(step.changed_root)))
            with self.timed(f"restart: Proxmox applies {keys} only at the next start"):
                self.ctx.pve.run("POST", f"{step.path}/status/reboot", idempotent=True)
