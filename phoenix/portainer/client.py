"""Portainer's API over verified HTTPS (requests): the calls Phoenix makes, each counted, each refusal explained.

Authentication is an API key (`X-API-Key`) for everything but making that key: the first time, the admin logs in
(`POST /api/auth`, a JWT) and creates it (`POST /api/users/{id}/tokens`), as Portainer's handlers require.

Retries (bounded; the README's reliability section says the same): a call whose connection is refused, reset or not
made within the timeout (nothing reached Portainer) is tried again after 1 s, 2 s and 4 s, four tries in all; a
read that Portainer accepted and did not answer within portainer_api.timeout_s is tried once more; a write that did
not answer is not (Portainer may have done it: the next run reads Portainer and goes on from what is there). Then
one message names the URL, the call and the cause. A certificate that fails verification (or the pin) is final at
once: nothing is sent, as for the Proxmox API.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import requests

from ..errors import PhoenixError
from ..pve.counters import Counters

ANSWERED = (200, 201, 204)
CONNECT_DELAYS = (1.0, 2.0, 4.0)   # seconds before the 2nd, 3rd and 4th try of a call that did not connect
READ_TIMEOUT_TRIES = 2             # a read accepted and not answered in time: tried this many times in all


def cause(error: BaseException) -> str:
    """What the network said, in its own words ("Connection refused"), not urllib3's wrapping of it."""
    text = str(error)
    found = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if found:
        return found[-1].strip()
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    return text.splitlines()[0][:200] if text else type(error).__name__


def _not_sent(error: requests.ConnectionError) -> bool:
    """Whether the request never left: the connection was refused, not resolved or not made in time."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


class PortainerError(PhoenixError):
    """Portainer refused a call (status is its HTTP status)."""

    def __init__(self, text: str, status: int = 0):
        self.status = status
        super().__init__(text)


class Portainer:
    """One Portainer server. All I/O with Portainer goes through here."""

    def __init__(self, url: str, *, key: str | None = None, verify: bool | str = True, fingerprint: str | None = None,
                 timeout: float = 30, counters: Counters | None = None, sleep: Callable[[float], None] = time.sleep):
        self.url, self.key, self.timeout, self.sleep = url.rstrip("/"), key, timeout, sleep
        self.counters = counters if counters is not None else Counters()
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy from the environment between Phoenix and its server
        self.session.verify = verify
        if fingerprint:
            from ..pve.client import FingerprintAdapter

            self.session.mount("https://", FingerprintAdapter(fingerprint))

    def call(self, method: str, path: str, *, body: Any = None, form: dict[str, str] | None = None,
             params: dict[str, Any] | None = None, jwt: str | None = None, quiet: tuple[int, ...] = (),
             read_timeouts: int | None = None) -> Any:
        """One request (tried again as the module says); the JSON answer (None when empty). A status in quiet comes
        back as PortainerError too, but is the caller's to explain. read_timeouts: how many times a read may time out
        before it is given up (READ_TIMEOUT_TRIES; less when a try was made elsewhere)."""
        headers = {"Accept": "application/json"}
        if jwt:
            headers["Authorization"] = f"Bearer {jwt}"
        elif self.key:
            headers["X-API-Key"] = self.key
        answer = self._send(method, path, headers, body=body, form=form, params=params, read_timeouts=read_timeouts)
        if answer.status_code not in ANSWERED:
            raise PortainerError(self._refusal(method, path, answer), answer.status_code)
        if not answer.content:
            return None
        try:
            return answer.json()
        except ValueError:
            raise PhoenixError(f"Portainer at {self.url} answered {method} {path} with something that is not JSON: "
                               "is this URL a Portainer server?") from None

    def _send(self, method: str, path: str, headers: dict[str, str], *, read_timeouts: int | None,
              **args: Any) -> requests.Response:
        """The request, tried again while nothing reached Portainer (or a read went unanswered), as the module says."""
        connects, timeouts = 0, 0
        allowed = READ_TIMEOUT_TRIES if read_timeouts is None else read_timeouts
        started = time.monotonic()
        while True:
            t0 = time.monotonic()
            try:
                return self.session.request(method, f"{self.url}{path}", json=args["body"], data=args["form"],
                                            params=args["params"], headers=headers, timeout=self.timeout)
            except requests.exceptions.SSLError as e:
                raise PhoenixError(f"cannot reach Portainer at {self.url} ({method} {path}): its TLS certificate "
                                   f"failed verification ({cause(e)}). Nothing was sent: give portainer_api.ca_file or "
                                   "pin portainer_api.fingerprint (Portainer's own certificate is self-signed)") from None
            except requests.ConnectionError as e:
                if method != "GET" and not _not_sent(e):  # dropped after the request went out: it may have been done
                    raise PhoenixError(
                        f"Portainer at {self.url} dropped the connection of {method} {path} ({cause(e)}). Whether "
                        "Portainer did it is not known: the next run reads Portainer and goes on from what is "
                        "there") from None
                if connects >= len(CONNECT_DELAYS):
                    raise PhoenixError(
                        f"Portainer at {self.url} is unreachable: {cause(e)} ({method} {path}; {connects + 1} tries "
                        f"over {time.monotonic() - started:.0f}s). Nothing was changed there by this call: check that "
                        "Portainer runs and that this machine reaches it; the next run goes on from here") from None
                self.counters.retried()
                self.sleep(CONNECT_DELAYS[connects])
                connects += 1
            except requests.Timeout:
                timeouts += 1
                if method != "GET" or timeouts >= allowed:
                    unknown = "" if method == "GET" else \
                        " Whether Portainer did it is not known: the next run reads Portainer and goes on from what is there."
                    made = timeouts + max(0, READ_TIMEOUT_TRIES - allowed) if method == "GET" else timeouts
                    tries = f"{made} tries" if made > 1 else "1 try"
                    raise PhoenixError(f"Portainer at {self.url} did not answer {method} {path} within "
                                       f"{self.timeout:g}s ({tries}): check that it runs and is not overloaded, or "
                                       f"raise portainer_api.timeout_s.{unknown}") from None
                self.counters.retried()
            except OSError as e:
                raise PhoenixError(f"cannot reach Portainer at {self.url} ({method} {path}): {cause(e)}") from None
            finally:
                self.counters.add(method, time.monotonic() - t0)

    def _refusal(self, method: str, path: str, answer: requests.Response) -> str:
        try:
            data = answer.json()
            message, details = str(data.get("message") or ""), str(data.get("details") or "")
        except (ValueError, AttributeError):
            message, details = " ".join(answer.text.split())[:300], ""  # one line, whatever the body
        text = f"Portainer refused {method} {path}: HTTP {answer.status_code} {message}"
        if details and details != message:
            text += f" ({details})"
        if answer.status_code == 401 and self.key:
            text += (". The API token was refused (revoked, or the server was reset): the next run makes a new one "
                     "with the admin password (secrets.portainer_password_file)")
        return text

    # ------------------------------------------------------------ the calls Phoenix makes

    def status(self) -> dict[str, Any]:
        """GET /api/system/status (public): the server answers. A server Phoenix just built has answered already (its
        app script waits for it), so this is tried as any call is, no longer."""
        return dict(self.call("GET", "/api/system/status"))

    def admin_exists(self) -> bool:
        try:
            self.call("GET", "/api/users/admin/check", quiet=(404,))
        except PortainerError as e:
            if e.status == 404:
                return False
            raise
        return True

    def admin_init(self, user: str, password: str) -> None:
        self.call("POST", "/api/users/admin/init", body={"Username": user, "Password": password})

    def login(self, user: str, password: str) -> str:
        try:
            return str(self.call("POST", "/api/auth", body={"Username": user, "Password": password})["jwt"])
        except PortainerError as e:
            if e.status == 422:
                raise PhoenixError(f"Portainer at {self.url} refused the login of {user!r}: the admin password in "
                                   "secrets.portainer_password_file is not this server's") from None
            raise

    def create_key(self, jwt: str, password: str, description: str) -> str:
        me = self.call("GET", "/api/users/me", jwt=jwt)
        answer = self.call("POST", f"/api/users/{me['Id']}/tokens", jwt=jwt,
                           body={"password": password, "description": description})
        return str(answer["rawAPIKey"])

    def endpoints(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/api/endpoints"))

    def create_agent_endpoint(self, name: str, url: str, tags: tuple[int, ...] = ()) -> dict[str, Any]:
        form = {"Name": name, "EndpointCreationType": "2", "URL": url, "TLS": "true", "TLSSkipVerify": "true",
                "TLSSkipClientVerify": "true"}
        if tags:
            form["TagIds"] = json.dumps(list(tags))
        return dict(self.call("POST", "/api/endpoints", form=form))

    def tag(self, name: str) -> int:
        """The id of the tag of this name, made if there is none."""
        found = next((t for t in self.call("GET", "/api/tags") if t.get("Name") == name), None)
        if found is None:
            found = self.call("POST", "/api/tags", body={"Name": name})
        return int(found["ID"])

    def stacks(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/api/stacks"))

    def create_stack(self, endpoint: int, name: str, content: str, env: list[dict[str, str]]) -> dict[str, Any]:
        return dict(self.call("POST", "/api/stacks/create/standalone/string", params={"endpointId": endpoint},
                              body={"Name": name, "StackFileContent": content, "Env": env}))

    def update_stack(self, stack_id: int, endpoint: int, content: str, env: list[dict[str, str]],
                     pull: bool, prune: bool = True) -> dict[str, Any]:
        return dict(self.call("PUT", f"/api/stacks/{stack_id}", params={"endpointId": endpoint},
                              body={"StackFileContent": content, "Env": env, "Prune": prune, "PullImage": pull}))

    def delete_stack(self, stack_id: int, endpoint: int) -> None:
        self.call("DELETE", f"/api/stacks/{stack_id}", params={"endpointId": endpoint})
