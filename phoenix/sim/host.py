"""The embedded simulated Proxmox host: fakepve on a loopback address, its state kept under .cache/sim/.

fakepve checks every call against the official PVE 9 API schema. Phoenix reaches it exactly as it
reaches a real node: proxmoxer, HTTPS verified against the simulator's own certificate, an API token
(that, as on a real node, may not set devN, bind mounts or feature flags other than nesting).
fakepve is AGPL-licensed and optional (`pip install phoenix[sim]`); only this package imports it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PhoenixError
from ..pve.endpoint import Endpoint

if TYPE_CHECKING:  # a run whose simulator is served by another process imports no asyncio
    import asyncio

TOKEN_ID = "root@pam!phoenix"
OS_TEMPLATES = ("ubuntu-24.04-standard_24.04-2_amd64.tar.zst", "debian-12-standard_12.7-1_amd64.tar.zst")
CT_TASKS = ("create", "clone", "destroy", "snapshot", "delsnapshot", "rollback", "template", "resize", "migrate")
CT_POWER = ("start", "shutdown", "stop")  # per-container durations in fakepve, applied here to every container
SERVER_FILE = "server.json"


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


class SimHost:
    """Start, persist and stop the simulator. One per process; thread-safe start."""

    def __init__(self, state_dir: Path, *, time_scale: float = 0.0, ct_secs: dict[str, float] | None = None,
                 host: str = "127.0.0.1"):
        """ct_secs: PVE seconds per container task (create, clone, snapshot, ...) and per start, shutdown, stop."""
        self.dir = Path(state_dir)
        unknown = sorted(set(ct_secs or {}) - set(CT_TASKS) - set(CT_POWER))
        if unknown:
            raise PhoenixError(f"unknown simulated task {', '.join(unknown)}: durations can be set for "
                               f"{', '.join(CT_TASKS + CT_POWER)} (PHOENIX_SIM_TASK_SECONDS)")
        self.time_scale, self.ct_secs, self.host = time_scale, dict(ct_secs or {}), host
        self.pve: Any = None
        self.endpoint: Endpoint | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()

    # ------------------------------------------------------------- lifecycle

    def start(self) -> Endpoint:
        with self._lock:
            if self.endpoint:
                return self.endpoint
            FakePve, make_cert = _fakepve()
            self.dir.mkdir(parents=True, exist_ok=True)
            token_file = self.dir / "token"
            if not token_file.exists():
                _write_private(token_file, secrets.token_hex(16) + "\n")
            certfile, keyfile = self.dir / "fakepve.crt", self.dir / "fakepve.key"
            if not certfile.exists() or time.time() - certfile.stat().st_mtime > 20 * 86400:
                make_cert(str(self.dir), hosts=(self.host,))
            owner = self

            class PersistentPve(FakePve):
                def _build_app(self):
                    from aiohttp import web

                    app = super()._build_app()

                    @web.middleware
                    async def persist(request, handler):
                        try:
                            return await handler(request)
                        finally:
                            if request.method != "GET":
                                owner.save()
                    app.middlewares.append(persist)
                    return app

                async def task(self, node, ttype, tid, user, body, vm=None, lock=True, log=()):
                    if vm is not None:
                        for name, secs in owner.ct_secs.items():
                            if name in CT_POWER:
                                setattr(vm, f"{name}_secs", secs)

                    async def saving():
                        try:
                            return await body()
                        finally:
                            owner.save()
                    return await super().task(node, ttype, tid, user, saving, vm=vm, lock=lock, log=log)

            pve = PersistentPve(host=self.host, port=0)
            pve.time_scale = self.time_scale
            pve.ct_secs.update({k: v for k, v in self.ct_secs.items() if k in CT_TASKS})
            pve.apitokens[TOKEN_ID] = token_file.read_text().strip()
            # An ACL makes fakepve check privileges as PVE does for a token: no devN, bind mounts or
            # feature flags other than nesting. Those go through the node transport, as on a real host.
            pve.grant(TOKEN_ID, "/", "Sys.Audit")
            for name in OS_TEMPLATES:
                pve.store_file("local", name, 200 * 1024 ** 2, content="vztmpl")
            self.pve = pve
            self._load()
            import asyncio

            self._loop = asyncio.new_event_loop()
            ready = threading.Event()
            failure: list[BaseException] = []

            def serve() -> None:
                asyncio.set_event_loop(self._loop)
                try:
                    self._loop.run_until_complete(pve.start(str(certfile), str(keyfile)))
                except BaseException as e:
                    failure.append(e)
                    ready.set()
                    return
                ready.set()
                self._loop.run_forever()

            self._thread = threading.Thread(target=serve, name="phoenix-sim", daemon=True)
            self._thread.start()
            ready.wait(30)
            if failure or not ready.is_set():
                raise PhoenixError(f"the simulated host did not start: {failure[0] if failure else 'timeout'}")
            self.endpoint = Endpoint(pve.url, "pve1", TOKEN_ID, token_file, verify=str(certfile), clock=self.time_scale,
                                     simulated=True)
            return self.endpoint

    def stop(self) -> None:
        with self._lock:
            if not self.endpoint or not self._loop:
                return
            import asyncio

            fut = asyncio.run_coroutine_threadsafe(self.pve.stop(), self._loop)
            try:
                fut.result(10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                if self._thread:
                    self._thread.join(10)
                self.save()
                self.endpoint = None

    # ----------------------------------------------------------- persistence

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def snapshot(self) -> dict[str, Any]:
        """The simulated host's guests and storage contents, as JSON-able data."""
        pve = self.pve
        cts = [{"vmid": ct.vmid, "node": ct.node, "status": ct.status, "config": ct.config, "pending": ct.pending,
                "snapshots": ct.snapshots} for ct in pve.cts]
        volumes = {name: store.get("volumes", {}) for name, store in pve.storages.items()}
        return {"format": 1, "cts": cts, "volumes": volumes}

    def save(self) -> None:
        if self.pve is None:
            return
        with self._save_lock:
            data = json.dumps(self.snapshot(), sort_keys=True)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(data)
            os.replace(tmp, self.state_file)

    def _load(self) -> None:
        if not self.state_file.exists():
            return
        try:
            data = json.loads(self.state_file.read_text())
        except ValueError:
            return  # a cache: a damaged one starts an empty host
        pve = self.pve
        for item in data.get("cts", []):
            config = dict(item["config"])
            # A task that was running when the last run died never finishes: as PVE after a crash,
            # the guest keeps its lock, except a half-created one, which the failed task removes.
            if config.get("lock") == "create":
                continue
            if config.get("lock") == "disk":
                config.pop("lock")
            ct = pve.add_ct(item["vmid"], node=item.get("node", "pve1"), status=item.get("status", "stopped"),
                            config=config, pending=item.get("pending") or {})
            ct.snapshots = item.get("snapshots") or {}
        for name, volumes in data.get("volumes", {}).items():
            if name in pve.storages:
                pve.storages[name].setdefault("volumes", {}).update(volumes)


def served(state_dir: Path) -> tuple[Endpoint, int] | None:
    """The simulator served for this state dir by another process (`python -m phoenix.sim`), and its pid, if one runs."""
    path = Path(state_dir) / SERVER_FILE
    try:
        data = json.loads(path.read_text())
        pid = int(data["pid"])
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"phoenix.sim" not in cmdline.read_bytes():
            return None  # the pid was reused: the server died without removing its file
        return Endpoint.from_json(data["endpoint"]), pid
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
