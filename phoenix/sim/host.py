"""The embedded simulated Proxmox host: fakepve on a loopback address, its state kept under .cache/sim/.

fakepve checks every call against the official PVE 9 API schema. Phoenix reaches it exactly as it
reaches a real node: proxmoxer, HTTPS verified against the simulator's own certificate, an API token
(that, as on a real node, may not set devN, bind mounts or feature flags other than nesting).
fakepve is AGPL-licensed and optional (`pip install phoenix[sim]`); only this package imports it.

One simulator per state dir: it holds the dir's lock (dirlock.py) from before it makes its certificate
until it stops. Its state is saved as it changes: the guests, volumes and pools a write or a task touched
are appended to a journal (store.py). When it stops, the tasks still running fail, as PVE fails a task
cut off, and release their guests' locks; a task killed with its simulator (SIGKILL) keeps its lock, as
on PVE, until `python -m phoenix.sim unlock`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PhoenixError
from ..pve.endpoint import Endpoint
from ..transport.simulated import NODE_FS
from .backups import Backups
from .changes import CONTROL, Touched, task_touched, touched
from .dirlock import IN_PROCESS, StateLock
from .guestlock import LXC, QEMU, Unlocked, after_crash, half_made, unlocked
from .ha import HaApi
from .node_api import NodeApi, initial_state
from .served import PORTAINER_FILE, SERVER_FILE, served
from .store import CT, NODE, POOL, STATE_FILE, VM, VOLUMES, Key, Stats, Store, dumps
from .vmdisks import VmDisks

if TYPE_CHECKING:  # a run whose simulator is served by another process imports no asyncio
    import asyncio

TOKEN_ID = "root@pam!phoenix"
NODE_NAME = "pve1"
SHARED_STORAGE = "ceph"   # the simulated cluster's shared storage (RBD: images, rootdir)
NODE_MEMORY = 256 * 1024 ** 3   # each simulated member's memory; what its running guests are given counts as used
NODE_BASE_USE = 2 * 1024 ** 3
OS_TEMPLATES = ("ubuntu-24.04-standard_24.04-2_amd64.tar.zst", "debian-12-standard_12.7-1_amd64.tar.zst")
CT_TASKS = ("create", "clone", "destroy", "snapshot", "delsnapshot", "rollback", "template", "resize", "migrate",
            "vzdump")
CT_POWER = ("start", "shutdown", "stop")  # per-container durations in fakepve, applied here to every container
# fakepve times no VM task but start, stop and shutdown: the simulator gives these the containers' durations (a VM
# restore, Phoenix's own stand-in in backups.py, that of a create, as fakepve times a container's restore)
QM_TASKS = {"qmcreate": "create", "qmrestore": "create", "qmclone": "clone", "qmsnapshot": "snapshot", "qmtemplate": "template",
            "qmdestroy": "destroy"}
UNLOCK_PATH = CONTROL + "/unlock/{vmid}"  # POST, with the API token: the simulated `pct unlock`
ABANDONED = "interrupted: the simulator stopped while this task ran"
STOPPED = "interrupted by signal"  # PVE's exit status of a task stopped through the API


def parse_task_seconds(text: str) -> dict[str, float]:
    """'create=20,clone=10' -> {'create': 20.0, 'clone': 10.0} (ValueError on a malformed item)."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected name=seconds, got {item!r}")
        out[name.strip()] = float(value)
    return out


def _fakepve():
    try:
        from fakepve import FakePve
        from fakepve.certs import make_cert
    except ImportError:
        raise PhoenixError("the simulated host needs fakepve: pip install -e '.[sim]'") from None
    return FakePve, make_cert


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _lost_connection(record: logging.LogRecord) -> bool:
    """aiohttp's server log, less a client that went away mid-request (a run interrupted by Ctrl-C or SIGTERM): that
    is the client's news to tell, not a traceback of the simulator's."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, ConnectionError)


def _print_note(text: str) -> None:
    print(f"phoenix.sim: {text}", file=sys.stderr, flush=True)


def ct_record(ct: Any) -> dict[str, Any]:
    """A container as saved."""
    return {"vmid": ct.vmid, "node": ct.node, "status": ct.status, "config": ct.config, "pending": ct.pending,
            "snapshots": ct.snapshots}


def vm_record(vm: Any) -> dict[str, Any]:
    """A VM as saved."""
    return {"vmid": vm.vmid, "name": vm.name, "node": vm.node, "status": vm.status, "config": vm.config,
            "pending": vm.pending, "snapshots": vm.snapshots, "template": bool(vm.template)}


def agent_enabled(config: dict[str, Any]) -> bool:
    """agent: 1, enabled=1 or 1,fstrim_cloned_disks=1 ..."""
    first = str(config.get("agent", "0")).split(",")[0]
    return first.split("=")[-1] == "1"


def cicustom_volumes(value: Any) -> list[str]:
    """The volumes a cicustom value names: user=local:snippets/a.yml,meta=... -> ['local:snippets/a.yml', ...]."""
    return [part.split("=", 1)[1] for part in str(value or "").split(",") if "=" in part]


STORAGE_INTERNAL = ("files", "avail", "active", "volumes", "total")  # fakepve's own keys, not storage.cfg's


def node_record(pve: Any) -> dict[str, Any]:
    """The node as saved: its notes, network, access, APT repositories and disks, and the storages' configs."""
    storages = {name: {k: (sorted(v) if isinstance(v, set) else v) for k, v in store.items() if k not in STORAGE_INTERNAL}
                for name, store in pve.storages.items()}
    return {"state": pve.whole_state(), "storages": storages}


def pool_record(pve: Any, name: str) -> dict[str, Any]:
    """A pool as saved: its guests, comment and storages."""
    info = pve.pool_info.get(name) or {}
    return {"vmids": sorted(pve.pools[name]), "comment": info.get("comment"), "storage": sorted(info.get("storage") or ())}


@dataclass(eq=False)
class _Task:
    """A task body running in the simulator."""

    kind: str
    tid: str
    touched: Touched  # what it may change
    done: asyncio.Future[None]
    stop: asyncio.Event   # set by DELETE /nodes/{node}/tasks/{upid}
    abandoned: bool = False
    upid: str = ""

    @property
    def vmids(self) -> frozenset[int]:
        return self.touched.vmids or frozenset()


_TASK: contextvars.ContextVar[_Task | None] = contextvars.ContextVar("phoenix_sim_task", default=None)


def _pve_class(base: Any, owner: SimHost) -> Any:
    """fakepve, saving what each write and task changed, failing its tasks when the simulator stops, and with
    an unlock route."""
    import asyncio

    from aiohttp import web
    from fakepve.model import TaskError
    from fakepve.server import USER, params

    class PersistentPve(NodeApi, HaApi, Backups, VmDisks, base):
        def _build_app(self):
            app = super()._build_app()

            @web.middleware
            async def persist(request, handler):
                try:
                    return await handler(request)
                finally:
                    if request.method not in ("GET", "HEAD"):
                        try:
                            values = await params(request)
                        except Exception:  # a malformed body: fakepve has answered it
                            values = {}
                        owner.save_touched(touched(request.method, request.path, values))

            async def unlock(request):
                if request[USER] not in (TOKEN_ID, self.user):
                    return web.json_response({"data": None, "message": "Permission check failed\n"}, status=403)
                return web.json_response({"data": owner._unlock_now(int(request.match_info["vmid"])).to_json()})

            app.middlewares.append(persist)
            app.router.add_post(UNLOCK_PATH.replace("{vmid}", "{vmid:\\d+}"), unlock)
            return app

        async def task(self, node, ttype, tid, user, body, vm=None, lock=True, log=()):
            if vm is not None:
                for name, secs in owner.ct_secs.items():
                    if name in CT_POWER:
                        setattr(vm, f"{name}_secs", secs)
            what = task_touched(getattr(vm, "vmid", None), tid)
            secs = owner.ct_secs.get(QM_TASKS.get(ttype, ""), 0)
            if secs:
                work = body

                async def body():
                    await self.pause(secs)
                    return await work()

            entry = _Task(ttype, str(tid), what, asyncio.get_running_loop().create_future(), asyncio.Event())

            async def tracked():
                owner._running[id(entry)] = entry
                token = _TASK.set(entry)
                began = time.monotonic()
                try:
                    return await body()
                finally:
                    owner.timeline.append((node, ttype, str(tid), began, time.monotonic()))
                    _TASK.reset(token)
                    del owner._running[id(entry)]
                    owner._by_upid.pop(entry.upid, None)
                    if entry.abandoned and not entry.stop.is_set():
                        owner._abandoned.append(entry)
                    entry.done.set_result(None)
                    owner.save_touched(what)
            upid = await super().task(node, ttype, tid, user, tracked, vm=vm, lock=lock, log=log)
            if not entry.done.done():  # it runs on: DELETE .../tasks/{upid} can stop it
                entry.upid = upid
                owner._by_upid[upid] = entry
            return upid

        def _routes_tasks(self):
            return [("DELETE", "/nodes/{node}/tasks/{upid}", self._task_stop)]

        async def _task_stop(self, v, user):
            """PVE's "stop a task" (DELETE /nodes/{node}/tasks/{upid}; its owner, or Sys.Modify on the node): the worker
            is signalled and the task fails "interrupted by signal" at its next step; what a failed create, clone or
            restore leaves is removed, as qemu-server's and pve-container's error paths remove it, other locks are
            released. A task that has ended is left as it is."""
            from fakepve.model import PveError

            upid = str(v["upid"])
            record = self.tasks.get(upid)
            if record is None:
                raise PveError(500, f"unable to parse worker upid '{upid}'")
            if record.get("user") != user and not self.allowed(user, f"/nodes/{v['node']}", "Sys.Modify"):
                raise PveError(403, f"Permission check failed (/nodes/{v['node']}, Sys.Modify)")
            entry = owner._by_upid.get(upid)
            if entry is not None and not entry.done.done():
                entry.stop.set()
                await asyncio.wait({entry.done}, timeout=30)
                owner._release([entry], STOPPED)
            return None

        # PVE keeps pools in /etc/pve/user.cfg, which is read-only without quorum (fakepve lets pool writes through)
        async def _pool_create(self, v, user):
            self.need_quorum()
            return await super()._pool_create(v, user)

        async def _pool_update(self, v, user):
            self.need_quorum()
            return await super()._pool_update(v, user)

        async def _pool_delete(self, v, user):
            self.need_quorum()
            return await super()._pool_delete(v, user)

        async def _resources(self, request):
            """As fakepve's, with each member's memory as its running guests use it (fakepve gives every node the
            same), so placement by free memory can be tried."""
            answer = await super()._resources(request)
            data = json.loads(answer.body)
            used: dict[str, int] = {}
            for item in data["data"]:
                if item.get("type") in ("lxc", "qemu") and item.get("status") == "running":
                    used[item["node"]] = used.get(item["node"], 0) + int(item.get("maxmem") or 0)
            for item in data["data"]:
                if item.get("type") == "node" and item.get("status") == "online":
                    item.update(maxmem=NODE_MEMORY, mem=NODE_BASE_USE + used.get(item["node"], 0))
            return web.json_response(data)

        async def _do_start(self, vm, user, p):
            """As PVE: a VM whose cicustom snippet is missing does not start; an agent-enabled VM's agent answers."""
            from fakepve.model import PveError

            for volume in cicustom_volumes(vm.config.get("cicustom")):
                if not owner.snippet_exists(volume):
                    raise PveError(500, f"volume '{volume}' does not exist\n")
            answer = await super()._do_start(vm, user, p)
            if agent_enabled(vm.config) and vm.agent is None:
                vm.agent = dict(owner.agent_answers.get(vm.vmid, {}))  # fakepve's canned answers (tests set them)
            return answer

        async def pause(self, secs):
            entry = _TASK.get()
            if entry is None:  # not a task (network latency, HA delays): as fakepve
                return await super().pause(secs)
            if owner._abandoning or entry.stop.is_set():
                entry.abandoned = True
                raise TaskError(STOPPED if entry.stop.is_set() else ABANDONED)
            if secs and self.time_scale:
                owner.save_touched(entry.touched)  # what the task has done so far, as a crash now would leave it
                waits = {asyncio.ensure_future(owner._stopping.wait()), asyncio.ensure_future(entry.stop.wait())}
                done, pending = await asyncio.wait(waits, timeout=secs * self.time_scale,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for w in pending:
                    w.cancel()
                if not done:
                    return None
                entry.abandoned = True
                raise TaskError(STOPPED if entry.stop.is_set() else ABANDONED)
            return None

    return PersistentPve


class SimHost:
    """Start, persist and stop the simulator. One per state dir (a second is refused); thread-safe start."""

    def __init__(self, state_dir: Path, *, time_scale: float = 0.0, ct_secs: dict[str, float] | None = None,
                 host: str = "127.0.0.1", role: str = IN_PROCESS, note: Callable[[str], None] | None = None,
                 node_root: Path | None = None, nodes: Sequence[str] = (NODE_NAME,)):
        """ct_secs: PVE seconds per container task (create, clone, snapshot, ...) and per start, shutdown, stop.

        role: who holds the state dir (IN_PROCESS: a Phoenix run; SERVED: `python -m phoenix.sim`), as a second
        simulator is told. note: where the simulator says what it did on its own (default: stderr). nodes: the members
        of the simulated cluster (the first answers the API); with more than one, the cluster has a shared storage
        (SHARED_STORAGE, Ceph RBD) besides each node's local ones."""
        self.dir = Path(state_dir)
        self.nodes = tuple(dict.fromkeys(nodes)) or (NODE_NAME,)
        unknown = sorted(set(ct_secs or {}) - set(CT_TASKS) - set(CT_POWER))
        if unknown:
            raise PhoenixError(f"unknown simulated task {', '.join(unknown)}: durations can be set for "
                               f"{', '.join(CT_TASKS + CT_POWER)} (PHOENIX_SIM_TASK_SECONDS)")
        self.time_scale, self.ct_secs, self.host = time_scale, dict(ct_secs or {}), host
        self.timeline: list[tuple[str, str, str, float, float]] = []  # (node, type, id, start, end) of each task body
        self.node_root = Path(node_root) if node_root is not None else self.dir / NODE_FS  # the node's files (archives)
        self.role = role
        self.notes: list[str] = []
        self._say = note or _print_note
        self.pve: Any = None
        self.agent_answers: dict[int, dict[str, Any]] = {}  # vmid -> fakepve's vm.agent once the VM starts
        self.endpoint: Endpoint | None = None
        self.store = Store(self.dir, self.note)
        self._dirlock = StateLock(self.dir)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._running: dict[int, _Task] = {}
        self._portainer: Any = None  # the Portainer stand-in's aiohttp runner, while it serves
        self._abandoned: list[_Task] = []
        self._by_upid: dict[str, _Task] = {}   # the running tasks by UPID (a stop request names one)
        self._abandoning = False
        self._stopping: asyncio.Event

    def note(self, text: str) -> None:
        """Say something the simulator did on its own (kept in .notes too)."""
        self.notes.append(text)
        self._say(text)

    @property
    def stats(self) -> Stats:
        """What saving the state has cost since the simulator started."""
        return self.store.stats

    # ------------------------------------------------------------- lifecycle

    def start(self) -> Endpoint:
        with self._lock:
            if self.endpoint:
                return self.endpoint
            FakePve, make_cert = _fakepve()
            self._dirlock.acquire(self.role)  # before the certificate and token: a second simulator touches nothing
            try:
                return self._start(FakePve, make_cert)
            except BaseException:
                self.store.close()
                self._dirlock.release()
                raise

    def _start(self, FakePve: Any, make_cert: Any) -> Endpoint:
        import asyncio

        token_file = self.dir / "token"
        if not token_file.exists():
            _write_private(token_file, secrets.token_hex(16) + "\n")
        certfile, keyfile = self.dir / "fakepve.crt", self.dir / "fakepve.key"
        if not certfile.exists() or time.time() - certfile.stat().st_mtime > 20 * 86400:
            make_cert(str(self.dir), hosts=(self.host,))
        server_log = logging.getLogger("aiohttp.server")
        if _lost_connection not in server_log.filters:
            server_log.addFilter(_lost_connection)
        pve = _pve_class(FakePve, self)(host=self.host, port=0)
        pve.nodes = {name: {"online": True} for name in self.nodes}
        pve.time_scale = self.time_scale
        pve.ct_secs.update({k: v for k, v in self.ct_secs.items() if k in CT_TASKS})
        pve.apitokens[TOKEN_ID] = token_file.read_text().strip()
        pve.node_state = initial_state()
        pve.node_root = self.node_root
        # An ACL makes fakepve check privileges as PVE does for a token: no devN, bind mounts or
        # feature flags other than nesting. Those go through the node transport, as on a real host.
        pve.grant(TOKEN_ID, "/", "Sys.Audit")
        for name in OS_TEMPLATES:
            pve.store_file("local", name, 200 * 1024 ** 2, content="vztmpl")
        local = pve.storages["local"]  # as a node set up for VMs: cloud images (import) and cloud-init snippets
        local["content"] = ",".join(dict.fromkeys([*str(local.get("content", "")).split(","), "snippets", "import"]))
        if len(self.nodes) > 1:  # a cluster: templates there can be cloned to any member
            pve.add_ceph_storage(SHARED_STORAGE)
        self.pve = pve
        self.store = Store(self.dir, self.note)
        self._running, self._abandoned, self._abandoning, self._by_upid = {}, [], False, {}
        self._stopping = asyncio.Event()
        self._load()
        self.pve.ha_apply()

        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = self._loop

        async def start_all() -> None:
            await pve.start(str(certfile), str(keyfile))
            self._portainer = await self._serve_portainer(certfile, keyfile)

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(start_all())
            except BaseException as e:
                failure.append(e)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:  # stopped: what is left on the loop is cancelled and the loop closed (its selector and self-pipe)
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=serve, name="phoenix-sim", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure or not ready.is_set():
            raise PhoenixError(f"the simulated host did not start: {failure[0] if failure else 'timeout'}")
        self.endpoint = Endpoint(pve.url, self.nodes[0], TOKEN_ID, token_file, verify=str(certfile),
                                 clock=self.time_scale, simulated=True)
        return self.endpoint

    def stop(self) -> None:
        """Stop serving: tasks still running fail and release their locks; the state is saved whole (compacted)."""
        with self._lock:
            if not self.endpoint or not self._loop:
                return
            import asyncio

            loop = self._loop
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(30)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                if self._thread:
                    self._thread.join(10)
                try:
                    self.save(compact=True)
                finally:
                    self.store.close()
                    self.endpoint = None
                    self._dirlock.release()

    async def _serve_portainer(self, certfile: Path, keyfile: Path) -> Any:
        """The Portainer stand-in, on the simulator's loop, over HTTPS with the simulator's certificate; its address
        in portainer.json of the state dir (for runs against a simulator served by another process too)."""
        import ssl

        from aiohttp import web

        from .portainer import PortainerStandin

        schema = os.environ.get("PHOENIX_COMPOSE_SCHEMA")  # the compose-spec schema, checked by the stand-in too
        standin = PortainerStandin(self.dir / "portainer-state.json", agents="simulated",
                                   compose_schema=Path(schema) if schema else None)
        runner = web.AppRunner(standin.app(), access_log=None)
        await runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(certfile), str(keyfile))
        site = web.TCPSite(runner, self.host, 0, ssl_context=context)
        await site.start()
        port = runner.addresses[0][1]
        self.portainer_standin = standin
        _write_private(self.dir / PORTAINER_FILE, json.dumps({"url": f"https://{self.host}:{port}",
                                                              "ca": str(certfile)}) + "\n")
        return runner

    async def _shutdown(self) -> None:
        """On the loop: fail the running tasks (each at its next pause, as an interrupted PVE task), stop serving,
        then release what the failed tasks left locked."""
        import asyncio

        self._abandoning = True
        self._stopping.set()
        if self._portainer is not None:
            self.portainer_standin.cancel_delays()
            await self._portainer.cleanup()
            self._portainer = None
            (self.dir / PORTAINER_FILE).unlink(missing_ok=True)
        await self.pve.stop()
        for _ in range(3):  # tasks whose request has just been answered start their body
            await asyncio.sleep(0)
        running = list(self._running.values())
        if running:
            await asyncio.wait([entry.done for entry in running], timeout=5)
        self._release([*self._abandoned, *(e for e in running if not e.done.done())])

    def _release(self, abandoned: list[_Task], why: str = ABANDONED) -> None:
        if not abandoned:
            return
        tasks = ", ".join(f"{e.kind} {e.tid}" for e in abandoned)
        self.note(f"task {tasks} stopped through the API ({why})" if why == STOPPED else
                  f"stopped with {len(abandoned)} task(s) running, which failed ({why}): {tasks}")
        for vmid in sorted({v for e in abandoned for v in e.vmids}):
            ct = self.pve.ct(vmid)
            if ct is not None and ct.lock:
                if half_made(ct.lock, LXC):
                    self.pve._drop(ct)
                    self.note(f"guest {vmid}: half-created by a task that failed, removed")
                else:
                    self.note(f"guest {vmid}: lock '{ct.lock}' of a task that failed released")
                    ct.lock = None
            vm = self.pve.vm(vmid)
            lock = vm.config.get("lock") if vm is not None else None
            if vm is None or not lock:
                continue
            if half_made(lock, QEMU):  # as qemu-server's create, restore and clone remove their target on failure
                self._drop_vm(vm)
                self.note(f"VM {vmid}: half-made by a task that failed (lock '{lock}'), removed with its disks")
            else:
                self.note(f"VM {vmid}: lock '{lock}' of a task that failed released")
                self._vm_lock(vm, None)

    @staticmethod
    def _vm_lock(vm: Any, lock: str | None) -> None:
        vm.lock = lock
        if lock:
            vm.config["lock"] = lock
        else:
            vm.config.pop("lock", None)

    def _drop_vm(self, vm: Any) -> None:
        """Remove a half-made VM and the volumes it owns (not those it refers to: a clone's parent's)."""
        pve = self.pve
        if vm in pve.vms:
            pve.vms.remove(vm)
        pve._pool_leave(vm.vmid)
        self._free_volumes_of(vm.vmid)

    def _free_volumes_of(self, vmid: int) -> None:
        for sid, store in self.pve.storages.items():
            for name, vol in list(store.get("volumes", {}).items()):
                if vol.get("vmid") == vmid and vol.get("content") == "images":
                    self.pve._qm_free(f"{sid}:{name}")

    # ----------------------------------------------------------- persistence

    def snippet_exists(self, volume: str) -> bool:
        """Whether a snippet volume (local:snippets/NAME) was written into the simulated storage (over 'SFTP')."""
        storage, _, volname = volume.partition(":")
        name = volname.removeprefix("snippets/")
        return volname.startswith("snippets/") and "/" not in name and (
            self.dir / "storage" / storage / "snippets" / name).is_file()

    @property
    def state_file(self) -> Path:
        return self.dir / STATE_FILE

    def snapshot(self) -> dict[str, Any]:
        """The simulated host's guests, storage contents and pools, as JSON-able data (as state.json holds them)."""
        pve = self.pve
        return {"format": 1, "cts": [ct_record(ct) for ct in pve.cts], "vms": [vm_record(vm) for vm in pve.vms],
                "volumes": {name: store.get("volumes", {}) for name, store in pve.storages.items()},
                "pools": {name: pool_record(pve, name) for name in pve.pools}}

    def save(self, vmids: Iterable[int] | None = None, *, volumes: bool = True, compact: bool = False) -> None:
        """Save what changed among these guests (None: every guest), the pools and (if asked) the storages' volumes;
        compact: write the whole state into state.json instead of the journal."""
        if self.pve is None:
            return
        with self._save_lock:
            t0, c0 = time.perf_counter(), time.thread_time()
            self.store.put(self._changes(vmids, volumes), compact=compact)
            self.store.stats.seconds += time.perf_counter() - t0
            self.store.stats.cpu_seconds += time.thread_time() - c0

    def save_touched(self, what: Touched) -> None:
        self.save(what.vmids, volumes=what.volumes)

    def _changes(self, vmids: Iterable[int] | None, volumes: bool) -> dict[Key, str | None]:
        """The records to compare with the saved ones: as they are now (None: removed)."""
        pve = self.pve
        out: dict[Key, str | None] = {}
        if vmids is None:
            current = {str(ct.vmid): ct for ct in list(pve.cts)}
            out.update({(CT, ident): None for ident in self.store.keys(CT) if ident not in current})
            out.update({(CT, ident): dumps(ct_record(ct)) for ident, ct in current.items()})
            vms = {str(vm.vmid): vm for vm in list(pve.vms)}
            out.update({(VM, ident): None for ident in self.store.keys(VM) if ident not in vms})
            out.update({(VM, ident): dumps(vm_record(vm)) for ident, vm in vms.items()})
        else:
            for vmid in vmids:
                ct = pve.ct(vmid)
                out[(CT, str(vmid))] = None if ct is None else dumps(ct_record(ct))
                vm = pve.vm(vmid)
                out[(VM, str(vmid))] = None if vm is None else dumps(vm_record(vm))
        if volumes:
            out.update({(VOLUMES, name): dumps(store.get("volumes", {})) for name, store in pve.storages.items()})
        out.update({(POOL, name): None for name in self.store.keys(POOL) if name not in pve.pools})
        out.update({(POOL, name): dumps(pool_record(pve, name)) for name in list(pve.pools)})
        out[(NODE, NODE_NAME)] = dumps(node_record(pve))
        return out

    def _load(self) -> None:
        """The saved state into fakepve; then compacted into state.json."""
        pve = self.pve
        dropped: list[int] = []
        dropped_vms: list[int] = []
        for (kind, ident), value in self.store.read().items():
            if kind == CT:
                # A task that was running when the last simulator died never finishes: as PVE after a crash,
                # the guest keeps its lock, except a half-created one, which the failed task removes.
                config = after_crash(dict(value["config"]), LXC)
                if config is None:
                    dropped.append(value["vmid"])
                    continue
                try:
                    ct = pve.add_ct(value["vmid"], node=value.get("node", "pve1"), status=value.get("status", "stopped"),
                                    config=config, pending=value.get("pending") or {})
                except ValueError as e:
                    self.note(f"saved guest {ident} is not loaded: {e}")
                    continue
                ct.snapshots = value.get("snapshots") or {}
            elif kind == VM:
                config = after_crash(dict(value["config"]), QEMU)
                if config is None:
                    dropped.append(value["vmid"])
                    dropped_vms.append(value["vmid"])
                    continue
                vm = pve.add_vm(value["vmid"], value.get("name") or config.get("name") or f"vm{value['vmid']}",
                                node=value.get("node", "pve1"), status=value.get("status", "stopped"), config=config,
                                pending=value.get("pending") or {}, template=bool(value.get("template")))
                vm.snapshots = value.get("snapshots") or {}
                vm.lock = config.get("lock")  # fakepve checks the attribute: a saved lock holds after a restart
                if vm.status == "running" and agent_enabled(config):
                    vm.agent = {}
            elif kind == VOLUMES and ident in pve.storages:
                pve.storages[ident].setdefault("volumes", {}).update(value)
            elif kind == POOL:
                pve.pools[ident] = {int(v) for v in value.get("vmids") or () if str(v).isdigit()}
                pve.pool_info[ident] = {"comment": value.get("comment"), "storage": set(value.get("storage") or ())}
            elif kind == NODE:
                pve.node_state = {**initial_state(), **value["state"]}
                for userid, user in pve.node_state["users"].items():  # the tokens made through the API work again
                    for tokenid, token in user.get("tokens", {}).items():
                        if token.get("value"):
                            pve.apitokens[f"{userid}!{tokenid}"] = token["value"]
                for name, options in value["storages"].items():  # storage.cfg as saved: made or updated
                    store = pve.storages.setdefault(name, {"active": 1, "files": set(), "volumes": {}})
                    store.update(options)
        if dropped:
            self.note(f"guest(s) {', '.join(map(str, dropped))} were half-created when the last simulator of "
                      f"{self.dir} died: removed")
        for vmid in dropped_vms:  # the disks its task had made, as the failed task would have removed them
            self._free_volumes_of(vmid)
        for ids in pve.pools.values():
            ids.difference_update(dropped)
        pve._sync_pools()
        self.save(compact=True)

    # ---------------------------------------------------------------- unlock

    def _unlock_now(self, vmid: int) -> Unlocked:
        """`pct unlock` / `qm unlock` on this host (on the loop thread); a half-made guest is removed instead."""
        pve = self.pve
        running = tuple(t["upid"] for t in list(pve.tasks.values()) if t["status"] == "running" and t["id"] == str(vmid))
        ct = pve.ct(vmid)
        if ct is not None:
            lock = ct.lock
            if lock:
                config = unlocked(ct.config, LXC)
                if config is None:
                    pve._drop(ct)
                else:
                    ct.config = config
            return Unlocked(vmid, True, lock, running)
        vm = pve.vm(vmid)
        if vm is None:
            return Unlocked(vmid, found=False)
        lock = vm.config.get("lock") or vm.lock
        if lock:
            if half_made(lock, QEMU):
                self._drop_vm(vm)
            else:
                self._vm_lock(vm, None)
        self.save([vmid])
        return Unlocked(vmid, True, lock, running, QEMU)


def advertise(host: SimHost, endpoint: Endpoint) -> Path:
    """Write server.json, so runs of this state dir use this process's simulator."""
    path = host.dir / SERVER_FILE
    _write_private(path, json.dumps({"pid": os.getpid(), "endpoint": endpoint.to_json()}) + "\n")
    return path


def spawn(state_dir: Path, *args: str, timeout: float = 30, **popen: Any) -> subprocess.Popen:
    """Start `python -m phoenix.sim --state-dir DIR ARGS` and return once it serves (it has advertised itself)."""
    proc = subprocess.Popen([sys.executable, "-m", "phoenix.sim", "--state-dir", str(state_dir), *args],
                            cwd=Path(__file__).resolve().parents[2], **popen)
    deadline = time.monotonic() + timeout
    while not (found := served(state_dir)) or found[1] != proc.pid:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise PhoenixError(f"the simulator server for {state_dir} did not start (exit status {proc.returncode})")
        time.sleep(0.02)
    return proc


_HOSTS: dict[Path, SimHost] = {}
_HOSTS_LOCK = threading.Lock()


def shared(state_dir: Path, **kwargs: Any) -> SimHost:
    """The process-wide simulator for a state dir (doit threads share one)."""
    key = Path(state_dir).resolve()
    with _HOSTS_LOCK:
        if key not in _HOSTS:
            _HOSTS[key] = SimHost(key, **kwargs)
        return _HOSTS[key]
