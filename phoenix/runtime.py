"""One Phoenix run's life cycle: its model of the estate, its connection to the host, and what it decides.

Shared by doit's threads (`doit -n 4` runs resources in threads). Cheap to create: nothing is read or
connected until needed, and a run with nothing to do reads its model from .cache/ and lists the host once.
The parts live in their own modules (model, hostview, forced, lastrun, builder); the run wires them and
answers doit's two questions: is this resource up to date (`check`), and build it (`execute`).
"""

from __future__ import annotations

import hashlib
import os
import secrets as _random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .config.files import resolve
from .errors import PhoenixError, UnsafeOperation
from .forced import Forced
from .hostview import HostView
from .lastrun import Outcomes
from .lastrun import write as write_last_run
from .plan import GENERIC, Action, Decision, Planner
from .pve.counters import Counters
from .pve.endpoint import Endpoint
from .resources import Resource, with_ancestors

if TYPE_CHECKING:  # a run that only checks resources imports none of these (no pydantic, no requests)
    from .artifacts.store import Store
    from .builder import BuildContext
    from .clones import CloneTurns
    from .cluster.run import Members
    from .config.estate import Estate
    from .config.hypervisor import HypervisorConfig
    from .facts.node import NodeFacts
    from .kinds.base import Context, Kind, Prepared
    from .lease import Lease
    from .model import Model
    from .portainer.run import PortainerSide
    from .pve.client import Pve
    from .transport.node import Node


LEASE_SECONDS = 120.0  # how long the host's lease lasts without renewal (phoenix.lease)


def sim_options_from_env() -> dict[str, Any]:
    """PHOENIX_SIM_TIME_SCALE (real seconds per PVE second) and PHOENIX_SIM_TASK_SECONDS ('create=20,clone=10')."""
    out: dict[str, Any] = {}
    if os.environ.get("PHOENIX_SIM_TIME_SCALE"):
        out["time_scale"] = float(os.environ["PHOENIX_SIM_TIME_SCALE"])
    if os.environ.get("PHOENIX_SIM_TASK_SECONDS"):
        from .sim.host import parse_task_seconds

        try:
            out["ct_secs"] = parse_task_seconds(os.environ["PHOENIX_SIM_TASK_SECONDS"])
        except ValueError as e:
            raise PhoenixError(f"PHOENIX_SIM_TASK_SECONDS: {e}") from None
    return out


def new_build_id(identity: str) -> str:
    """A build id is new at every build, so children of a rebuilt resource follow."""
    return hashlib.sha256(f"{identity}:{time.time_ns()}:{_random.token_hex(8)}".encode()).hexdigest()[:12]


class Run:
    """A run's shared state and its answers to doit."""

    def __init__(self, root: Path, *, config_dir: Path | None = None, images_dir: Path | None = None,
                 cache_dir: Path | None = None, out: TextIO | None = None, sim_options: dict[str, Any] | None = None):
        self.root = Path(root)
        self.config_dir = Path(config_dir or os.environ.get("PHOENIX_CONFIG_DIR") or self.root / "etc")
        self.images_dir = Path(images_dir or self.root / "images")
        self.cache = Path(cache_dir or os.environ.get("PHOENIX_CACHE_DIR") or self.root / ".cache")
        self.out = out or sys.stdout
        self.sim_options = sim_options if sim_options is not None else sim_options_from_env()
        self.id = _random.token_hex(4)          # in the tags of what this run builds (phx-run-<id>)
        self.lock = threading.RLock()
        self._say_lock = threading.Lock()
        self.counters = Counters()              # every request of the run, whichever client made it
        self.portainer_counters = Counters()    # every request to Portainer
        self.view = HostView(self._list, self._node_config, lambda: self.portainer_side.listing())
        self.outcomes = Outcomes()
        self.forced = Forced(self.cache / "forced.json", self.say)
        self.scope: set[str] = set()            # the resources doit will run (set_scope)
        self.keep_going = False                 # doit --continue: a task refused by its checks stops alone
        self._node_facts: dict[str, NodeFacts] = {}
        self._transports: dict[str, Node] = {}
        self._sim: Any = None
        self._memo: dict[str, Decision] = {}
        self._memo_version = -1
        self.lease_seconds = float(os.environ.get("PHOENIX_LEASE_SECONDS") or LEASE_SECONDS)
        self.lease: Lease | None = None
        self._ready: bool | PhoenixError = False     # every check passed and the lease is held (or why not)
        self._prepared: dict[str, tuple[Action, Prepared]] = {}
        self._owners: tuple[int, dict[str, str]] | None = None

    # ------------------------------------------------------------- model

    @cached_property
    def model(self) -> Model:
        """The resources and the endpoint, from .cache/ while no input byte has changed (ConfigError if bad)."""
        from . import model

        found, estate = model.load(self.config_dir, self.images_dir, self.cache, self.say)
        if estate is not None:
            self.__dict__["estate"] = estate  # validated just now: its notes are said once
            for note in estate.notes:
                self.say(f"phoenix: note: {note}")
        return found

    @cached_property
    def estate(self) -> Estate:
        """The validated estate (config, scripts): what a build or an explanation needs."""
        from .config.estate import load_estate

        return load_estate(self.config_dir, self.images_dir)

    @property
    def resources(self) -> dict[str, Resource]:
        return self.model.resources

    @property
    def api(self) -> Endpoint:
        """The API as the config names it (on the simulated host, filled in when the simulator serves)."""
        return self.model.endpoint

    @property
    def hypervisor(self) -> HypervisorConfig:
        return self.estate.hypervisor

    def resolve(self, path: str) -> Path:
        """A path from the config: ~ expanded, relative to the config dir."""
        return resolve(self.config_dir, path)

    @property
    def simulated(self) -> bool:
        return self.api.simulated

    @property
    def target(self) -> str:
        return self.api.target

    # ------------------------------------------------------------ output

    def say(self, line: str) -> None:
        with self._say_lock:
            self.out.write(line.rstrip("\n") + "\n")
            self.out.flush()

    def log_path(self, key: str) -> Path:
        path = self.cache / "logs" / f"{key}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # --------------------------------------------------------- the host

    @cached_property
    def endpoint(self) -> Endpoint:
        """The API this run calls; on the simulated host, the served simulator or one started now."""
        from .target import connect

        options = self.sim_options
        if self.api.simulated and self.model.members and "nodes" not in options:
            options = {**options, "nodes": tuple(self.model.members)}  # the simulated cluster has the config's members
        ep, self._sim = connect(self.api, self.cache / "sim", options, self.say)
        from .pve.failover import answering

        return answering(ep, self.say)

    @cached_property
    def pve(self) -> Pve:
        from .pve.client import Pve

        return Pve.of(self.endpoint, self.counters)

    def _list(self) -> list[dict[str, Any]]:
        """The run's one bulk listing of the cluster (guests, nodes, storages): the standard library's GET when there
        is no connection yet (no requests)."""
        if "pve" not in self.__dict__:
            from .pve import reader

            items = reader.get(self.endpoint, self.counters, "cluster/resources")
            if items is not None:
                return items
        items = self.pve.get("cluster/resources")
        return items if isinstance(items, list) else []

    def _node_config(self, node: str) -> dict[str, Any]:
        """A node's config (its notes hold the host parts' record): the standard library's GET too."""
        path = f"nodes/{node}/config"
        if "pve" not in self.__dict__:
            from .pve import reader

            found = reader.get(self.endpoint, self.counters, path)
            if isinstance(found, dict):
                return found
        found = self.pve.get(path)
        return found if isinstance(found, dict) else {}

    @cached_property
    def portainer_side(self) -> PortainerSide:
        """Where the Portainer server is, the run's listing of it, a client with Phoenix's token."""
        from .portainer.run import PortainerSide

        return PortainerSide(self)

    @property
    def transport(self) -> Node:
        """The shell operations of the API's node (proxmox.node)."""
        return self.node_ops(self.api.node)

    def node_ops(self, node: str) -> Node:
        """A member's shell operations: SSH to a real node (one connection each, made on first use), a recorder on the
        simulated one."""
        with self.lock:
            found = self._transports.get(node)
            if found is None:
                found = self._transports[node] = self._make_transport(node)
            return found

    def _make_transport(self, node: str) -> Node:
        if self.simulated:
            from .transport.simulated import NODE_FS, SimulatedNode, node_fs

            state = self.cache / "sim"
            members = self.model.members or [self.api.node]
            return SimulatedNode(state / "runs.jsonl", node_fs(state / NODE_FS, node, members[0]),
                                 node if len(members) > 1 else "")
        from .transport.node import SshNode
        from .transport.ssh import SshShell

        ssh, host = self.hypervisor.ssh, self.api.host
        member = self.hypervisor.proxmox.member(node)
        if node != self.api.node or member is not None:
            from .cluster.members import ssh_of

            ssh, host = ssh_of(self.hypervisor, node, self.member_addresses, self.api.host)
        return SshNode(SshShell(ssh, host, node), node)

    def member_addresses(self) -> dict[str, str]:
        """Each member's address as /cluster/status gives it (read once, when SSH to an undeclared member is needed)."""
        from .cluster.members import addresses

        return self.context.once("cluster status", lambda: addresses(self.pve.get("cluster/status")))

    def node_facts(self, node: str | None = None) -> NodeFacts:
        node = node or self.api.node
        with self.lock:
            if node not in self._node_facts:
                self._node_facts[node] = self.node_ops(node).facts()
            return self._node_facts[node]

    def secrets(self, names: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, str]:
        """Secret values for a script, from the 0600 token files of the hypervisor config."""
        from .secrets import ensure_placeholder_secret, read_secret

        out = {}
        for name in names:
            configured = self.hypervisor.secrets.file(name)
            if configured is None:
                if name in required:
                    raise PhoenixError(f"secret {name} is needed: set secrets.{name}_file in {self.estate.hypervisor_file}")
                continue
            path = self.resolve(configured)
            if self.simulated and not path.exists():
                with self.lock:  # builds in parallel may need it at once: one creates it and says so
                    if not path.exists():
                        ensure_placeholder_secret(path, name)
                        self.say(f"phoenix: created a placeholder secret {path} (mode 0600) for the simulated host")
            if not path.exists() and name not in required:
                continue
            out[name] = read_secret(path)
        return out

    # ------------------------------------------------------------ decide

    @cached_property
    def kinds(self) -> dict[str, Kind]:
        from .kinds import KINDS

        return KINDS

    @cached_property
    def artifacts(self) -> Store | None:
        """The artifact store (PHOENIX_ARTIFACTS, or the config's artifacts.dir), or None: layers are baked."""
        from .artifacts.store import Store, store_dir

        found = store_dir(self.model.artifacts, Path)
        return Store(found, self.say, self.cache / "artifacts-hashed.json") if found is not None else None

    @cached_property
    def planner(self) -> Planner:
        return Planner(self.resources, self.kinds, self.artifacts.find if self.artifacts is not None else None,
                       where=self.members.placed, online=self.members.online, copies=self.members.copy_targets,
                       copy_facts=self.members.copy_on)

    @cached_property
    def members(self) -> Members:
        """Where each guest is or goes on the cluster, and the layers' copies (phoenix.cluster.run)."""
        from .cluster.run import Members

        return Members(self)

    def facts_of(self, res: Resource) -> Any:
        return self.kinds[res.kind].facts(res, self.view)

    def decide(self, key: str) -> Decision:
        """What the resource needs now, after its ancestors, against the host as this run knows it."""
        with self.lock:
            if self._memo_version != self.view.version or not self.view.listed:
                self.view.guests()  # list first: the memo is for this view
                self._memo = {}
                self._memo_version = self.view.version
            return self.planner.decide(key, self.facts_of, forced=self.forced.keys(), memo=self._memo,
                                       live_owners=self.live_owners())

    def live_owners(self) -> dict[str, str]:
        """Other runs changing the host now, by id: read (one request) only when a guest is being built by another
        run and this run does not hold the host's lease itself."""
        if self.lease is not None:
            return {}
        with self.lock:
            if self._owners is not None and self._owners[0] == self.view.version:
                return self._owners[1]
            others = {f.owner for f in self.view.guests().values() if f.building and f.owner and f.owner != self.id}
            found: dict[str, str] = {}
            if others:
                from .lease import Lease, stale

                probe = Lease(lambda: self.pve, self.id, self.say)
                holder = probe.current()
                now = time.time()
                if holder is not None and holder.run in others and stale(holder, now, probe.host, probe.pid) is None:
                    found[holder.run] = holder.describe(now)
            self._owners = (self.view.version, found)
            return found

    def record(self, key: str) -> dict[str, Any]:
        """The record kept with the resource on the host: the digest of every input (one read)."""
        res = self.resources[key]
        return self.kinds[res.kind].record(res, self.context)

    def explain(self, decision: Decision) -> Decision:
        """Add the reasons only records can give (one read each, for stale resources only)."""
        if not decision.needs_record:
            return decision
        keys = [d.key for d in (decision, decision.origin)
                if d is not None and d.why in GENERIC and d.reasons == (GENERIC[d.why],)]
        records = {k: self.record(k) for k in keys}
        with self.lock:
            self.view.guests()
            return self.planner.decide(decision.key, self.facts_of, forced=self.forced.keys(), records=records,
                                       live_owners=self.live_owners())

    # ------------------------------------------------------------- build

    @cached_property
    def clones(self) -> CloneTurns[str]:
        """Clones of one parent one at a time, the child with the longest chain below it first."""
        from .clones import CloneTurns

        return CloneTurns({k: r.parent for k, r in self.resources.items()})

    @cached_property
    def context(self) -> Context:
        """What kinds may use to prepare and plan a build."""
        from .flags import protected_allowed
        from .kinds.base import Context

        return Context(self.estate, self.api.node, lambda: self.pve, self.view, lambda: self.transport, self.node_facts,
                       self.id, protected_allowed, self.simulated, self.endpoint.host,
                       artifacts=self.artifacts.root if self.artifacts is not None else None,
                       portainer_target=lambda: self.portainer_side.target, placed=self.members.placed,
                       copy_vmid=self.members.copy_vmid,
                       transports=self.node_ops, facts_of_node=self.node_facts)

    @cached_property
    def build_context(self) -> BuildContext:
        from .builder import BuildContext

        def before_record() -> None:
            if self.lease is not None:
                self.lease.verify()

        return BuildContext(self.pve, self.transport, self.view, self.clones, self.say, self.secrets, self.log_path,
                            before_record, self.lease.check if self.lease is not None else lambda: None,
                            self.portainer_side.client, lambda: self.portainer_side.target, self.portainer_side.admin_password,
                            self.artifacts.forget_hash if self.artifacts is not None else lambda _: None,
                            nodes=self.node_ops, spool=self.cache / "spool")

    def build_context_at(self, node: str | None) -> BuildContext:
        """The build context on a member: its shell operations are that node's."""
        if node is None or node == self.api.node:
            return self.build_context
        import dataclasses

        return dataclasses.replace(self.build_context, node=self.node_ops(node))

    def execute(self, key: str) -> dict[str, Any]:
        """doit's action for a resource: build or update it as needed; returns what doit saves."""
        from .builder import Builder

        res = self.resources[key]
        kind = self.kinds[res.kind]
        t0 = time.monotonic()
        outcome = "up-to-date"
        try:
            decision = self.explain(self.decide(key))
            if decision.action == Action.BLOCKED:
                raise UnsafeOperation("; ".join(decision.reasons))
            if decision.artifact is not None:
                self.say(f"{key:<6} {decision.text}")
            elif decision.action.bakes:
                self.say(f"{key:<6} {decision.action}: {'; '.join(decision.reasons)}")
                self.clones.started(key)
            if decision.action != Action.OK:
                self.ready()
                found = self._prepared.pop(key, None)
                ctx = self.context.at(decision.node)
                prepared = found[1] if found is not None and found[0] == decision.action else \
                    kind.prepare(res, decision, ctx)
                if prepared.problems:
                    raise PhoenixError(self.stopped([(key, p) for p in prepared.problems]))
                parent = self.facts_of(self.resources[res.parent]) if res.parent is not None else None
                parent_build = parent.build_id if parent is not None else None
                steps = kind.steps(res, decision, prepared, ctx,
                                   build_id=new_build_id(res.identity(parent_build)), parent_build=parent_build)
                Builder(self.build_context_at(decision.node), key).run(steps)
                outcome = "restored" if decision.artifact is not None else "built" if decision.action.bakes else "updated"
                if decision.action.bakes:
                    self.forced.done(key)
        except BaseException:
            self.outcomes.note(key, "failed", time.monotonic() - t0)
            raise
        finally:
            if "clones" in self.__dict__:
                self.clones.finished(key)  # a sibling waiting to clone from the same parent need not wait for it
        facts = self.facts_of(res)
        identity = facts.identity if facts is not None else None
        self.outcomes.note(key, outcome, time.monotonic() - t0, identity)
        return {"identity": identity, "build": facts.build_id if facts is not None else None}

    # ------------------------------------------------------------ safety

    def stopped(self, problems: list[tuple[str, str]]) -> str:
        """The message of a run stopped by checks: every problem, and what this run had changed before."""
        built = self.outcomes.of("built") + self.outcomes.of("restored") + self.outcomes.of("updated")
        lines = [f"{len(problems)} problem(s) found before changing anything for them:"]
        lines += [f"  - {key}: {text}" for key, text in problems]
        lines.append(f"Already built or updated in this run: {', '.join(built)}." if built else
                     "Nothing was changed on the host.")
        return "\n".join(lines)

    def preflight(self) -> list[tuple[str, str]]:
        """Read and check what every build in the run's scope needs; the problems found (key, text)."""
        keys = self.scope or set(self.resources)
        with self.lock:
            self.view.guests()
            decisions = self.planner.plan(self.facts_of, forced=self.forced.keys(), keys=keys, live_owners=self.live_owners())
        problems: list[tuple[str, str]] = []
        for key, decision in decisions.items():
            if decision.action in (Action.OK, Action.BLOCKED):
                continue
            res = self.resources[key]
            prepared = self.kinds[res.kind].prepare(res, decision, self.context.at(decision.node))
            self._prepared[key] = (decision.action, prepared)
            problems += [(key, p) for p in prepared.problems if (key, p) not in problems]
        return problems

    def ready(self) -> None:
        """Before the run's first write: every check of every build in its scope, then the host's lease (one run
        at a time); after that the host is listed again, since another run may have changed it meanwhile."""
        with self.lock:
            if self._ready is True:
                return
            if isinstance(self._ready, PhoenixError):
                raise PhoenixError(f"stopped: {str(self._ready).splitlines()[0]} (see above)")
            try:
                problems = self.preflight()
                if problems and not self.keep_going:  # under --continue each refuses alone (its prepared problems)
                    raise PhoenixError(self.stopped(problems))
                from .lease import Lease

                held = Lease(lambda: self.pve, self.id, self.say, self.lease_seconds)
                held.acquire()
                self.lease = held
                before = dict(self.view.guests())
                self.view.relist()
                if self.view.guests() != before:
                    self._prepared.clear()
                    problems = self.preflight()
                    if problems and not self.keep_going:
                        raise PhoenixError(self.stopped(problems))
            except PhoenixError as e:
                self._ready = e
                if self.lease is not None:
                    self.lease.release()
                    self.lease = None
                raise
            self._ready = True

    @contextmanager
    def holding(self) -> Iterator[None]:
        """The host's lease around a change made outside a doit run (`phoenix start/stop/delete`)."""
        from .lease import Lease

        if self.lease is not None:
            yield
            return
        held = Lease(lambda: self.pve, self.id, self.say, self.lease_seconds)
        held.acquire()
        self.lease = held
        try:
            yield
        finally:
            self.lease = None
            held.release()

    def check(self, key: str) -> Decision:
        """doit's uptodate check; an up-to-date resource is noted in the run's outcomes."""
        decision = self.decide(key)
        if decision.action == Action.OK:  # so it is on the host, with its identity
            facts = self.facts_of(self.resources[key])
            self.outcomes.note(key, "up-to-date", identity=facts.identity if facts is not None else None)
        elif decision.action.bakes:  # doit checks in its main thread, before a worker starts the build
            self.clones.announce(key, self.scope, lambda sibling: self.decide(sibling).action.bakes)
        elif "clones" in self.__dict__:
            self.clones.finished(key)  # announced by a sibling, but it has nothing to build
        return decision

    def set_scope(self, tasks: list[str]) -> None:
        """The resources doit will run: the tasks asked for and their ancestors (told by the reporter at the start)."""
        self.scope = with_ancestors(self.resources, (t for t in tasks if t in self.resources))

    # ------------------------------------------------------------ finish

    def summary(self) -> dict[str, Any]:
        data = self.outcomes.summary(self.target if "model" in self.__dict__ else "?", self.counters)
        data["portainer_requests"] = self.portainer_counters.total
        return data

    def write_last_run(self) -> dict[str, Any]:
        data = self.summary()
        write_last_run(self.cache / "last-run.json", data)
        return data

    def finish(self) -> dict[str, Any]:
        """The end of a doit run (the reporter's): the host's lease released first, so that its requests are counted,
        then .cache/last-run.json written."""
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        return self.write_last_run()

    def stop_tasks(self) -> None:
        """An interrupted run stops the Proxmox tasks it started that still run (Pve.stop_started)."""
        if "pve" in self.__dict__:
            self.pve.stop_started(self.say)

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        for ops in self._transports.values():
            ops.close()
        self._transports.clear()
        if "pve" in self.__dict__:
            self.pve.close()
        if self._sim is not None:
            self._sim.stop()
