"""Portainer's API over verified HTTPS (requests): the calls Phoenix makes, each counted, each refusal explained.

Authentication is an API key (`X-API-Key`) for everything but making that key: the first time, the admin logs in
(`POST /api/auth`, a JWT) and creates it (`POST /api/users/{id}/tokens`), as Portainer's handlers require.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from ..errors import PhoenixError
from ..pve.counters import Counters

ANSWERED = (200, 201, 204)


class PortainerError(PhoenixError):
    """Portainer refused a call (status is its HTTP status)."""

    def __init__(self, text: str, status: int = 0):
        self.status = status
        super().__init__(text)


class Portainer:
    """One Portainer server. All I/O with Portainer goes through here."""

    def __init__(self, url: str, *, key: str | None = None, verify: bool | str = True, fingerprint: str | None = None,
                 timeout: float = 30, counters: Counters | None = None):
        self.url, self.key, self.timeout = url.rstrip("/"), key, timeout
        self.counters = counters if counters is not None else Counters()
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy from the environment between Phoenix and its server
        self.session.verify = verify
        if fingerprint:
            from ..pve.client import FingerprintAdapter

            self.session.mount("https://", FingerprintAdapter(fingerprint))

    def call(self, method: str, path: str, *, body: Any = None, form: dict[str, str] | None = None,
             params: dict[str, Any] | None = None, jwt: str | None = None, quiet: tuple[int, ...] = ()) -> Any:
        """One request; the JSON answer (None when empty). A status in quiet comes back as PortainerError too,
        but is the caller's to explain."""
        headers = {"Accept": "application/json"}
        if jwt:
            headers["Authorization"] = f"Bearer {jwt}"
        elif self.key:
            headers["X-API-Key"] = self.key
        t0 = time.monotonic()
        try:
            answer = self.session.request(method, f"{self.url}{path}", json=body, data=form, params=params,
                                          headers=headers, timeout=self.timeout)
        except requests.exceptions.SSLError as e:
            raise PhoenixError(f"cannot reach Portainer at {self.url} ({method} {path}): its TLS certificate failed "
                               f"verification ({e}). Nothing was sent: give portainer_api.ca_file or pin "
                               "portainer_api.fingerprint (Portainer's own certificate is self-signed)") from None
        except requests.Timeout:
            raise PhoenixError(f"Portainer at {self.url} did not answer {method} {path} within {self.timeout:.0f}s: "
                               "check that it runs, or raise portainer_api.timeout_s") from None
        except OSError as e:
            raise PhoenixError(f"cannot reach Portainer at {self.url} ({method} {path}): {e}") from None
        finally:
            self.counters.add(method, time.monotonic() - t0)
        if answer.status_code not in ANSWERED:
            raise PortainerError(self._refusal(method, path, answer), answer.status_code)
        if not answer.content:
            return None
        try:
            return answer.json()
        except ValueError:
            raise PhoenixError(f"Portainer at {self.url} answered {method} {path} with something that is not JSON: "
                               "is this URL a Portainer server?") from None

    def _refusal(self, method: str, path: str, answer: requests.Response) -> str:
        try:
            data = answer.json()
            message, details = str(data.get("message") or ""), str(data.get("details") or "")
        except (ValueError, AttributeError):
            message, details = answer.text.strip()[:300], ""
        text = f"Portainer refused {method} {path}: HTTP {answer.status_code} {message}"
        if details and details != message:
            text += f" ({details})"
        if answer.status_code == 401 and self.key:
            text += ". The API token was refused: delete the token file and run again to make a new one"
        return text

    # ------------------------------------------------------------ the calls Phoenix makes

    def wait_ready(self, seconds: float) -> dict[str, Any]:
        """GET /api/system/status until it answers (a server just started takes a moment)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                return dict(self.call("GET", "/api/system/status"))
            except PhoenixError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1)

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

    def create_agent_endpoint(self, name: str, url: str) -> dict[str, Any]:
        form = {"Name": name, "EndpointCreationType": "2", "URL": url, "TLS": "true", "TLSSkipVerify": "true",
                "TLSSkipClientVerify": "true"}
        return dict(self.call("POST", "/api/endpoints", form=form))

    def stacks(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/api/stacks"))

    def create_stack(self, endpoint: int, name: str, content: str, env: list[dict[str, str]]) -> dict[str, Any]:
        return dict(self.call("POST", "/api/stacks/create/standalone/string", params={"endpointId": endpoint},
                              body={"Name": name, "StackFileContent": content, "Env": env}))

    def update_stack(self, stack_id: int, endpoint: int, content: str, env: list[dict[str, str]],
                     pull: bool) -> dict[str, Any]:
        return dict(self.call("PUT", f"/api/stacks/{stack_id}", params={"endpointId": endpoint},
                              body={"StackFileContent": content, "Env": env, "Prune": True, "PullImage": pull}))

    def delete_stack(self, stack_id: int, endpoint: int) -> None:
        self.call("DELETE", f"/api/stacks/{stack_id}", params={"endpointId": endpoint})
