"""One Phoenix run: the estate, the connection to the host, and what this run knows of the host.

Shared by doit's threads (`doit -n 4` runs layers in threads): the host is listed once per run, in
bulk, and every bake or update updates that view itself, so a child sees its parent's new build id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import sys
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .config.files import HYPERVISOR, LXC, SUFFIXES, resolve
from .errors import PhoenixError, UnsafeOperation
from .facts import guests as F
from .layers import Layer, task_ctid, with_ancestors
from .plan import Action, Decision, decide
from .pve.counters import Counters
from .pve.endpoint import Endpoint

if TYPE_CHECKING:  # a run that only checks layers imports none of these (no pydantic, no requests)
    from .clones import CloneTurns
    from .config.estate import Estate
    from .config.hypervisor import HypervisorConfig
    from .facts.node import NodeFacts
    from .pve.client import Pve
    from .transport.base import NodeTransport

MODEL_CACHE_FORMAT = 4  # bump when what .cache/estate.pickle holds changes


def model_key(config_dir: Path, images_dir: Path) -> str:
    """Digest of everything the validated estate is made from: config files, scripts, and Phoenix's own model code.

    Secret files are not in it: they are read when a script needs them, never validated or hashed."""
    h = hashlib.sha256(f"{MODEL_CACHE_FORMAT}|{config_dir.resolve()}|{images_dir.resolve()}".encode())
    package = Path(__file__).parent
    configs = [config_dir / f"{stem}{suffix}" for stem in (HYPERVISOR, LXC) for suffix in SUFFIXES]
    sources = [*(p for p in configs if p.exists()), *sorted(p for p in images_dir.rglob("*") if p.is_file()),
               *sorted(package.glob("config/*.py")), package / "layers.py", package / "features.py"]
    for path in sources:
        h.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


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


def dumps_last_run(data: dict[str, Any]) -> str:
    """last-run.json with one line per task: readable, and written by json's fast encoder."""
    head = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in data.items() if k != "tasks")
    tasks = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in data["tasks"].items())
    return f"{{\n{head},\n  \"tasks\": {{\n{tasks}\n  }}\n}}\n" if tasks else f"{{\n{head},\n  \"tasks\": {{}}\n}}\n"


def write_whole(path: Path, data: bytes) -> None:
    """Write a file whole or not at all: a temporary file (one per process and thread), then a rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Run:
    """Everything a run shares. Cheap to create: nothing is read or connected until needed."""

    def __init__(self, root: Path, *, config_dir: Path | None = None, images_dir: Path | None = None,
                 cache_dir: Path | None = None, out: TextIO | None = None, sim_options: dict[str, Any] | None = None):
        self.root = Path(root)
        self.config_dir = Path(config_dir or os.environ.get("PHOENIX_CONFIG_DIR") or self.root / "etc")
        self.images_dir = Path(images_dir or self.root / "images")
        self.cache = Path(cache_dir or os.environ.get("PHOENIX_CACHE_DIR") or self.root / ".cache")
        self.out = out or sys.stdout
        self.sim_options = sim_options if sim_options is not None else sim_options_from_env()
        self.lock = threading.RLock()
        self._say_lock = threading.Lock()
        self.view: dict[int, F.GuestFacts] = {}
        self._listed = False
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()
        self._node_facts: NodeFacts | None = None
        self._sim = None
        self._forced: frozenset[int] | None = None
        self.counters = Counters()  # every request of the run, whichever client made it
        self.scope: set[int] = set()  # the layers doit will run (set_scope)

    # ------------------------------------------------------------- config

    @cached_property
    def _model(self) -> dict[str, Any]:
        """The layers and the API settings, reused from .cache/ while no input byte has changed.

        The validated estate is kept there too, pickled on its own: a run that only checks layers never
        unpickles it, and so never imports the config models.
        """
        key = model_key(self.config_dir, self.images_dir)
        path = self.cache / "estate.pickle"
        try:
            cached = pickle.loads(path.read_bytes())
            if cached["key"] == key:
                return cached
        except Exception:  # a missing, old or damaged cache is rebuilt
            pass
        from .config.estate import load_estate
        from .layers import layers

        estate = load_estate(self.config_dir, self.images_dir)
        model = {"key": key, "layers": layers(estate), "api": Endpoint.of(estate.hypervisor, self.config_dir),
                 "estate": pickle.dumps(estate)}
        with contextlib.suppress(OSError):  # a cache: a run without one is only slower
            write_whole(path, pickle.dumps(model))
        self.__dict__["estate"] = estate
        return model

    @cached_property
    def estate(self) -> Estate:
        """The validated estate (config, scripts): what a bake or an explanation needs."""
        model = self._model
        if "estate" in self.__dict__:  # validated just now
            return self.__dict__["estate"]
        try:
            return pickle.loads(model["estate"])
        except Exception:
            from .config.estate import load_estate

            return load_estate(self.config_dir, self.images_dir)

    @property
    def layers(self) -> dict[int, Layer]:
        return self._model["layers"]

    @property
    def api(self) -> Endpoint:
        """The API as the config names it (on the simulated host, filled in when the simulator serves)."""
        return self._model["api"]

    @property
    def hypervisor(self) -> HypervisorConfig:
        """The whole hypervisor config (from the estate: for bakes, SSH and secrets)."""
        return self.estate.hypervisor

    def resolve(self, path: str) -> Path:
        """A path from the hypervisor config: ~ expanded, relative to the config dir."""
        return resolve(self.config_dir, path)

    @property
    def simulated(self) -> bool:
        return self.api.simulated

    @property
    def target(self) -> str:
        return self.api.target

    # ------------------------------------------------------------- output

    def say(self, line: str) -> None:
        with self._say_lock:
            self.out.write(line.rstrip("\n") + "\n")
            self.out.flush()

    def log_path(self, task: str) -> Path:
        path = self.cache / "logs" / f"{task}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # ---------------------------------------------------------- endpoints

    @cached_property
    def endpoint(self) -> Endpoint:
        """The API this run calls; on the simulated host, the served simulator or one started now."""
        prox = self.api
        if not self.simulated:
            return prox
        from .sim.host import served, shared

        state = self.cache / "sim"
        elsewhere = served(state)
        if elsewhere:
            ep, pid = elsewhere
            self.say(f"phoenix: target is the SIMULATED Proxmox host at {ep.url} (fakepve served by process {pid}; "
                     f"state in {state})")
        else:
            sim = shared(state, **self.sim_options)
            if sim.endpoint is None:
                self._sim = sim  # started by this run, so stopped (and saved) by it
            ep = sim.start()
            self.say(f"phoenix: target is the SIMULATED Proxmox host at {ep.url} (fakepve; state in {sim.dir})")
        # the simulator's clock runs time_scale real seconds per PVE second: tasks are polled on it
        return dataclasses.replace(ep, timeout=prox.timeout, task_timeout=prox.task_timeout, retries=prox.retries)

    @cached_property
    def pve(self) -> Pve:
        from .pve.client import Pve

        return Pve.of(self.endpoint, self.counters)

    @cached_property
    def transport(self) -> NodeTransport:
        if self.simulated:
            from .transport.simulated import SimulatedTransport

            return SimulatedTransport(self.cache / "sim" / "runs.jsonl")
        from .transport.ssh import SshTransport

        return SshTransport(self.hypervisor.ssh, self.api.host, self.api.node)

    def node_facts(self) -> NodeFacts:
        with self.lock:
            if self._node_facts is None:
                self._node_facts = self.transport.node_facts()
            return self._node_facts

    def secrets(self, names: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, str]:
        """Secret values for a script, from the 0600 token files of the hypervisor config."""
        from .secrets import ensure_placeholder_secret, read_secret

        out = {}
        for name in names:
            configured = getattr(self.hypervisor.secrets, f"{name}_file")
            if configured is None:
                if name in required:
                    raise PhoenixError(f"secret {name} is needed: set secrets.{name}_file in {self.estate.hypervisor_file}")
                continue
            path = self.resolve(configured)
            if self.simulated and not path.exists():
                with self.lock:  # bakes in parallel may need it at once: one creates it and says so
                    if not path.exists():
                        ensure_placeholder_secret(path, name)
                        self.say(f"phoenix: created a placeholder secret {path} (mode 0600) for the simulated host")
            if not path.exists() and name not in required:
                continue
            out[name] = read_secret(path)
        return out

    # --------------------------------------------------------------- host

    def guests(self) -> dict[int, F.GuestFacts]:
        """The host's guests: one bulk listing per run, then kept current by the run itself."""
        with self.lock:
            if not self._listed:
                items = None
                if "pve" not in self.__dict__:  # no connection yet: the standard library's GET, without requests
                    from .pve import reader

                    items = reader.get(self.endpoint, self.counters, "cluster/resources", type="vm")
                if items is None:
                    items = self.pve.get("cluster/resources", type="vm")
                self.view = F.parse_resources(items, self.endpoint.node)
                self._listed = True
            return self.view

    def build_id(self, ctid: int | None) -> str | None:
        if ctid is None:
            return None
        facts = self.guests().get(ctid)
        return facts.build_id if facts else None

    def forget_guest(self, ctid: int) -> None:
        with self.lock:
            self.view.pop(ctid, None)

    # ------------------------------------------------------------- forced

    @property
    def forced_file(self) -> Path:
        return self.cache / "forced.json"

    def forced(self) -> set[int]:
        """Layers `doit forget` asked to rebake (a request kept in .cache until the rebake is done)."""
        return set(self._forced_now())

    def _forced_now(self) -> frozenset[int]:
        with self.lock:
            if self._forced is None:
                try:
                    self._forced = frozenset(json.loads(self.forced_file.read_text()))
                except (OSError, ValueError):
                    self._forced = frozenset()
            return self._forced

    def set_forced(self, ctids: set[int]) -> None:
        with self.lock:
            write_whole(self.forced_file, json.dumps(sorted(ctids)).encode())
            self._forced = frozenset(ctids)

    @cached_property
    def clones(self) -> CloneTurns:
        """Clones of one parent one at a time, the child with the longest chain below it first."""
        from .clones import CloneTurns

        return CloneTurns({ctid: layer.parent for ctid, layer in self.layers.items()})

    # ------------------------------------------------------------ decide

    def decide(self, ctid: int, record: dict[str, Any] | None = None) -> Decision:
        """What the layer needs now, against the host as this run knows it (record: to explain a change)."""
        layer, view = self.layers[ctid], self.guests()
        parent = view.get(layer.parent) if layer.parent is not None else None
        return decide(layer, view.get(ctid), parent_build=parent.build_id if parent else None,
                      forced=ctid in self._forced_now(), record=record)

    def explain(self, decision: Decision) -> Decision:
        """Add the reasons only the guest's record can give (one GET, for stale layers only)."""
        return self.decide(decision.ctid, self.record(decision.ctid)) if decision.needs_record else decision

    def record(self, ctid: int) -> dict[str, Any]:
        """The record Phoenix wrote into the guest's description: the digest of every input (one GET)."""
        config = self.pve.get(f"nodes/{self.endpoint.node}/lxc/{ctid}/config")
        return F.parse_record(config.get("description"))

    # ----------------------------------------------------------- execute

    def execute(self, ctid: int) -> dict[str, Any]:
        """The doit action of a layer: bake, rebuild or update it as needed; returns what doit saves."""
        from .build import Builder  # doit runs the action only when the layer is not up to date

        layer = self.layers[ctid]
        t0 = time.monotonic()
        outcome = "up-to-date"
        try:
            decision = self.explain(self.decide(ctid))
            if decision.action == Action.BLOCKED:
                raise UnsafeOperation("; ".join(decision.reasons))
            if decision.action.bakes:
                self.say(f"{layer.task:<6} {decision.action}: {'; '.join(decision.reasons)}")
                self.clones.started(ctid)
                Builder(self).bake(layer)
                outcome = "built"
                forced = self.forced()
                if ctid in forced:
                    self.set_forced(forced - {ctid})
            elif decision.action == Action.UPDATE:
                Builder(self).update(layer, decision)
                outcome = "updated"
        except BaseException:
            self.outcomes[layer.task] = {"outcome": "failed", "seconds": round(time.monotonic() - t0, 3),
                                         "identity": None}
            raise
        finally:
            if "clones" in self.__dict__:
                self.clones.finished(ctid)  # a sibling waiting to clone from the same parent need not wait for it
        facts = self.guests().get(ctid)
        self.outcomes[layer.task] = {"outcome": outcome, "seconds": round(time.monotonic() - t0, 3),
                                     "identity": facts.identity if facts else None}
        return {"identity": facts.identity if facts else None, "build": facts.build_id if facts else None}

    def up_to_date(self, ctid: int) -> Decision:
        """doit's uptodate check; an up-to-date layer is noted in the run's outcomes."""
        decision = self.decide(ctid)
        if decision.action == Action.OK:  # so the guest is on the host, with its identity
            self.outcomes[f"ct{ctid}"] = {"outcome": "up-to-date", "seconds": 0.0, "identity": self.view[ctid].identity}
        elif decision.action.bakes:  # doit checks in its main thread, before a worker starts the bake
            self.clones.announce(ctid, self.scope, lambda sibling: self.decide(sibling).action.bakes)
        elif "clones" in self.__dict__:
            self.clones.finished(ctid)  # announced by a sibling, but it has nothing to bake
        return decision

    def set_scope(self, tasks: list[str]) -> None:
        """The layers doit will run: the tasks asked for and their ancestors (told by the reporter at the start)."""
        self.scope = with_ancestors(self.layers, (c for c in map(task_ctid, tasks) if c is not None))

    # ------------------------------------------------------------- finish

    def summary(self) -> dict[str, Any]:
        return {"target": self.target if "_model" in self.__dict__ else "?", "api_requests": self.counters.total,
                "api_seconds": round(self.counters.seconds, 3),
                "wall_seconds": round(time.monotonic() - self.started, 3), "tasks": dict(sorted(self.outcomes.items()))}

    def write_last_run(self) -> dict[str, Any]:
        data = self.summary()
        write_whole(self.cache / "last-run.json", dumps_last_run(data).encode())
        return data

    def close(self) -> None:
        if "transport" in self.__dict__:
            self.transport.close()
        if self._sim is not None:
            self._sim.stop()
