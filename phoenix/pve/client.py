"""The Proxmox API for one run: proxmoxer over verified HTTPS with an API token.

Adds what proxmoxer leaves to its users: counting requests, retrying idempotent calls on lock and
network errors with backoff, waiting for tasks (UPIDs) with a real timeout, and errors that carry
the task's own log.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from requests.adapters import HTTPAdapter

from ..errors import PhoenixError, ProxmoxTaskFailed, SettingsError, TaskTimeout
from ..tlsget import fingerprint_hex
from .counters import Counters
from .endpoint import Endpoint

T = TypeVar("T")

TRANSIENT_MESSAGES = ("is locked", "can't lock file", "got timeout", "no quorum", "temporarily unavailable")
TRANSIENT_STATUS = (502, 503, 595, 596, 599)
# A task's status is polled after POLL_FIRST host seconds, then each interval 1.3x the last, up to one a second.
POLL_FIRST, POLL_GROWTH, POLL_MAX = 0.02, 1.3, 1.0
POLL_FLOOR = 0.001  # real seconds: never a busy loop, even on a simulator whose tasks take no time
STOP_WAIT = 15.0    # real seconds an interrupted run waits for each task it stops to end


class ApiError(PhoenixError):
    """A Proxmox API call was refused."""

    def __init__(self, method: str, path: str, status: int, message: str, errors: Any = None):
        self.method, self.path, self.status, self.reason, self.errors = method, path, status, message, errors
        detail = f" {errors}" if errors else ""
        super().__init__(f"Proxmox refused {method} /{path}: HTTP {status} {message}{detail}")


class FingerprintAdapter(HTTPAdapter):
    """Accept exactly the certificate with this SHA-256 fingerprint (self-signed PVE nodes)."""

    def __init__(self, fingerprint: str):
        self._fingerprint = fingerprint_hex(fingerprint)
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # The fingerprint (assert_fingerprint, above) is the check: a node's self-signed certificate has no CA
        # chain to verify. This is the one place a CA check is replaced, and only by the pin.
        super().cert_verify(conn, url, False, cert)


def _reason(e: OSError) -> str:
    """What went wrong with the connection, without urllib3's wrapping."""
    text = str(e)
    for found, said in (("Connection refused", "the connection was refused"),
                        ("Name or service not known", "the host name does not resolve"),
                        ("No route to host", "there is no route to the host"),
                        ("Network is unreachable", "the network is unreachable")):
        if found in text:
            return said
    return text


def _lock_refusal(exc: BaseException) -> bool:
    if not isinstance(exc, ResourceException) or exc.status_code != 500:
        return False
    text = f"{exc.status_message} {exc.content}".lower()
    return "is locked" in text or "can't lock file" in text


def _transient(exc: BaseException) -> bool:
    """Worth another try: a dropped or refused connection, a busy node. A certificate that fails verification is final,
    and so is a host that did not answer within the timeout (trying again would only multiply the wait)."""
    if isinstance(exc, requests.exceptions.SSLError | requests.Timeout):
        return False
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return True
    if isinstance(exc, ResourceException):
        text = f"{exc.status_message} {exc.content}".lower()
        return exc.status_code in TRANSIENT_STATUS or (exc.status_code == 500 and any(m in text for m in TRANSIENT_MESSAGES))
    return False


class Pve:
    """One node's API. All I/O with Proxmox goes through here."""

    def __init__(self, url: str, node: str, token_id: str, token_secret: str, *, verify: bool | str = True,
                 fingerprint: str | None = None, timeout: float = 30, task_timeout: float = 1800, retries: int = 4,
                 sleep: Callable[[float], None] = time.sleep, clock: float = 1.0, counters: Counters | None = None):
        """clock: real seconds per host second, for task polling (a simulated host may run faster than real time);
        counters: the run's, shared with its other clients."""
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise PhoenixError(f"API URL must be https://host:port, got {url!r}")
        user, _, name = token_id.partition("!")
        self.url, self.node, self.timeout = url, node, timeout
        self.task_timeout, self.retries, self.sleep, self.clock = task_timeout, retries, sleep, clock
        self.counters = counters if counters is not None else Counters()
        # requests reads the environment (proxy variables, a CA bundle for verify=True) again on every request, a scan
        # of os.environ; its own rule is applied once here, for this URL, with the same result
        env = requests.Session().merge_environment_settings(url, {}, None, verify, None)
        verify = verify if env["verify"] is None else env["verify"]
        self.api = ProxmoxAPI(parts.hostname, port=parts.port or 8006, user=user, token_name=name,
                              token_value=token_secret, verify_ssl=verify, timeout=timeout)
        session: requests.Session = self.api._store["session"]
        session.proxies.update(env["proxies"])
        session.trust_env = False
        session.hooks["response"].append(lambda r, *a, **k: self.counters.add(r.request.method, r.elapsed.total_seconds()))
        if fingerprint:  # the certificate must be exactly this one; the adapter checks it instead of a CA chain
            session.mount("https://", FingerprintAdapter(fingerprint))
        self.started: dict[str, str] = {}   # the tasks this client started and has not seen end: UPID -> the call
        self._started_lock = threading.Lock()

    def close(self) -> None:
        """Close the HTTP connections this client keeps open (a run's end)."""
        self.api._store["session"].close()

    @classmethod
    def of(cls, ep: Endpoint, counters: Counters | None = None) -> Pve:
        return cls(ep.url, ep.node, ep.token_id, ep.secret(), verify=ep.verify, fingerprint=ep.fingerprint,
                   timeout=ep.timeout, task_timeout=ep.task_timeout, retries=ep.retries, clock=ep.clock, counters=counters)

    # ------------------------------------------------------------------ calls

    def _retrying(self, once: Callable[[], T], retry: Callable[[Exception], bool], base: float) -> T:
        """once(), again after a growing, jittered pause while retry(error) says so, at most self.retries times."""
        attempt = 0
        while True:
            try:
                return once()
            except Exception as e:
                if not retry(e) or attempt >= self.retries:
                    raise
                attempt += 1
                self.counters.retried()
                self.sleep(min(5.0, base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))

    def _call(self, method: str, path: str, idempotent: bool, retry_locked: bool = False, /, **args: Any) -> Any:
        """One API call. Idempotent calls are retried on lock and network errors; others only on a lock
        refusal when retry_locked (Proxmox refused before doing anything), never on a network error."""

        def retry(e: Exception) -> bool:
            return _transient(e) if idempotent else (retry_locked and _lock_refusal(e))

        try:
            answer = self._retrying(lambda: getattr(self.api(path), method.lower())(**args), retry, 0.2)
            if method != "GET" and isinstance(answer, str) and answer.startswith("UPID:"):
                with self._started_lock:
                    self.started[answer] = f"{method} /{path}"
            return answer
        except ResourceException as e:
            raise ApiError(method, path, e.status_code, str(e.content or e.status_message), e.errors) from None
        except requests.exceptions.SSLError as e:
            raise SettingsError(
                f"cannot reach Proxmox at {self.url} ({method} /{path}): its TLS certificate failed verification ({e}). "
                "This is final, nothing was sent: check proxmox.ca_file (the cluster's CA, /etc/pve/pve-root-ca.pem) or "
                "the pinned proxmox.fingerprint") from None
        except requests.Timeout:
            raise PhoenixError(
                f"Proxmox at {self.url} did not answer {method} /{path} within {self.timeout:.0f}s: check that the node "
                "and its API (pveproxy) are up, or raise proxmox.timeout_s") from None
        except OSError as e:  # requests' own errors (a refused connection, after the retries), a CA file that is gone
            raise SettingsError(f"cannot reach Proxmox at {self.url} ({method} /{path}): {_reason(e)}. Check "
                                "proxmox.api_url and that the node's API (pveproxy) is up") from None

    def call(self, method: str, path: str, /, *, idempotent: bool = False, **data: Any) -> Any:
        """One call, answered as it is: a call that starts a task returns its UPID without waiting (see run)."""
        return self._call(method, path, idempotent, **data)

    def get(self, path: str, /, **params: Any) -> Any:
        return self._call("GET", path, True, **params)


    # ------------------------------------------------------------------ tasks

    def wait(self, upid: str, timeout: float | None = None) -> None:
        """Wait for a task; ProxmoxTaskFailed carries its log, TaskTimeout says it still runs on the node."""
        node = upid.split(":")[1] if upid.startswith("UPID:") else self.node
        deadline = time.monotonic() + (timeout or self.task_timeout)
        delay = POLL_FIRST
        while True:
            status = self.get(f"nodes/{node}/tasks/{upid}/status")
            if status.get("status") == "stopped":
                with self._started_lock:
                    self.started.pop(upid, None)
                exit_status = str(status.get("exitstatus", ""))
                if exit_status == "OK" or exit_status.startswith("WARNINGS"):
                    return
                log = self.get(f"nodes/{node}/tasks/{upid}/log", limit=500)
                raise ProxmoxTaskFailed(upid, exit_status, [str(entry.get("t", "")) for entry in log])
            if time.monotonic() > deadline:
                with self._started_lock:  # given up on: it goes on on the node, as the message says
                    self.started.pop(upid, None)
                raise TaskTimeout(f"Proxmox task {upid} still runs after {timeout or self.task_timeout:.0f}s; it goes on "
                                  "on the node. Check it in the node's task log; a rerun converges once it ends.")
            self.sleep(max(POLL_FLOOR, delay * self.clock))
            delay = min(POLL_MAX, delay * POLL_GROWTH)

    def stop_started(self, say: Callable[[str], None]) -> None:
        """Stop the tasks this client started and has not seen end (a run interrupted by Ctrl-C or SIGTERM): a node
        goes on with a task when the run that started it ends, so the run stops it, as `qm`'s own Ctrl-C does, with
        PVE's "stop a task" (DELETE /nodes/{node}/tasks/{upid}: its owner may), and waits a little for it to end (a
        failed create, clone or restore removes what it made). One that cannot be stopped is said, and goes on."""
        with self._started_lock:
            started = dict(self.started)
        for upid, what in started.items():
            node = upid.split(":")[1]
            try:
                self._call("DELETE", f"nodes/{node}/tasks/{upid}", False)
                deadline = time.monotonic() + STOP_WAIT
                while self.get(f"nodes/{node}/tasks/{upid}/status").get("status") != "stopped":
                    if time.monotonic() > deadline:
                        raise PhoenixError(f"it still runs after {STOP_WAIT:.0f}s")
                    time.sleep(0.1)
                with self._started_lock:
                    self.started.pop(upid, None)
                say(f"phoenix: stopped the Proxmox task this run started ({what}: {upid})")
            except PhoenixError as e:
                say(f"phoenix: could not stop the Proxmox task this run started ({what}: {upid}): {e}. It goes on on "
                    "the node; a rerun while it runs is refused, naming it, and rebuilds the guest once it has ended")
            except KeyboardInterrupt:  # asked twice: the rest is left to run on
                say("phoenix: interrupted again: the tasks this run started that are left go on on the node")
                return

    def run(self, method: str, path: str, /, *, task_timeout: float | None = None, idempotent: bool = False,
            retry_locked: bool = False, **data: Any) -> None:
        """A call that starts a task, and the wait for it (at most task_timeout, else the endpoint's). An idempotent
        task that failed on a lock is run again. The call's own parameters are **data (a `path` or `timeout` too)."""

        def once() -> None:
            upid = self._call(method, path, idempotent, retry_locked, **data)
            if isinstance(upid, str) and upid.startswith("UPID:"):
                self.wait(upid, task_timeout)

        def retry(e: Exception) -> bool:
            return idempotent and isinstance(e, ProxmoxTaskFailed) and any(m in e.exitstatus.lower() for m in TRANSIENT_MESSAGES)

        self._retrying(once, retry, 0.5)
