"""A STAND-IN for the Portainer CE 2.2x API: the ~10 routes Phoenix uses, with the rules of Portainer's own handlers
(api/http/handler/{auth,users,endpoints,stacks,system}), served over HTTPS with its own certificate.

No Portainer server can run here and no fake one exists, so this is Phoenix's own stand-in; the README names it so,
and live tests run against a real Portainer when PHOENIX_PORTAINER_URL is given. What it keeps, and what it checks:

- users: one administrator, made by `POST /api/users/admin/init` (once; a password of at least 12 characters) or at
  start (`admin_password`, as `--admin-password-file` does); `POST /api/auth` gives a JWT; `GET /api/users/me`.
- API keys: `POST /api/users/{id}/tokens {password, description}` with a JWT (not an API key), for oneself, the
  password checked; the raw key (`ptr_…`) is shown once; requests authenticate with `X-API-Key` or a JWT.
- environments: `GET /api/endpoints`; `POST /api/endpoints` (multipart: Name, EndpointCreationType 2 for an agent,
  URL tcp://host:9001): names are unique; an agent is pinged first and must answer with the
  `Portainer-Agent-Version` and `Portainer-Agent-Platform` headers (or, with `agents="simulated"`, every agent of the
  simulated estate answers); or EndpointCreationType 1 for the server's own Docker socket (`unix://…`). A new server
  has no environment.
- tags: `GET /api/tags`, `POST /api/tags {Name}` (names unique: 409); an environment is created with `TagIds` (a
  JSON list in the form) of tags that exist, and lists them.
- stacks: `GET /api/stacks` (every stack with its Env; `filters={"EndpointID":N}`),
  `POST /api/stacks/create/standalone/string?endpointId=N {Name, StackFileContent, Env}` (the name lower-cased and
  characters outside [-_a-z0-9] dropped, unique per environment; the compose content must parse as a Compose file
  with services, and against the compose-spec schema when `compose_schema` is given), `PUT /api/stacks/{id}`,
  `GET /api/stacks/{id}/file`, `DELETE /api/stacks/{id}`.

Its state is kept in a JSON file beside the simulated host's, so a second run finds what the first deployed.

Faults, for the tests (and for trying Phoenix by hand): `portainer-faults.json` beside the state (read again whenever
it changes, so a served simulator in another process obeys it too) holds a list of rules, each
`{"method": "POST", "path": "^/api/endpoints$", "status": 500, "message": "…", "delay": 2.5, "when": "before",
"times": 1}`: a request that matches (method `*` or absent: any; `path` a regular expression searched in the path)
waits `delay` seconds (before it is handled, or `"when": "after"`: handled, then answered late, as a server that
did the work and was slow to say so), then gets the error `status` instead of its answer (no `status`: the real
answer). `times` bounds how many requests a rule hits (absent: every one). A server that does not listen at all is
the test's to make (nothing at the URL).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

VERSION = "2.33.5"
FAULTS_FILE = "portainer-faults.json"
TYPE_DOCKER, TYPE_AGENT = 1, 2
PASSWORD_MIN = 12           # Portainer's default password policy
USER: web.RequestKey[dict[str, Any]] = web.RequestKey("user", dict)
AUTH: web.RequestKey[str] = web.RequestKey("auth", str)


def normalise(name: str) -> str:
    """Portainer's stack name: lower case, characters outside [-_a-z0-9] dropped."""
    return re.sub(r"[^-_a-z0-9]", "", name.lower())


def _error(status: int, message: str, details: str = "") -> web.Response:
    return web.json_response({"message": message, "details": details or message}, status=status)


class PortainerStandin:
    """The stand-in's state and routes; `app()` is the aiohttp application."""

    def __init__(self, state_file: Path | None = None, *, admin_password: str | None = None, agents: str = "connect",
                 compose_schema: Path | None = None):
        self.state_file, self.agents, self.compose_schema = state_file, agents, compose_schema
        self.secret = secrets.token_bytes(32)
        self.requests: list[tuple[str, str]] = []
        self._faults: list[dict[str, Any]] = []
        self._faults_seen: tuple[float, int] | None = None
        self._delayed: set[Any] = set()   # requests held by a fault's delay: cancelled when the server stops
        self.state: dict[str, Any] = {"admin": None, "keys": [], "endpoints": [], "stacks": [], "tags": [],
                                      "next": {"endpoint": 1, "stack": 1, "key": 1, "tag": 1}}
        if state_file is not None and state_file.exists():
            self.state.update(json.loads(state_file.read_text()))
        self.state.setdefault("tags", [])
        self.state["next"].setdefault("tag", 1)
        if admin_password and self.state["admin"] is None:
            self.state["admin"] = {"Id": 1, "Username": "admin", "password": self._hash(admin_password)}
            self._save()

    # -------------------------------------------------------------- helpers

    def _hash(self, password: str) -> str:
        return hashlib.sha256(("portainer-standin:" + password).encode()).hexdigest()

    def _save(self) -> None:
        if self.state_file is not None:
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
            tmp.replace(self.state_file)

    def _jwt(self, user: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps({"id": user["Id"], "username": user["Username"],
                                                    "exp": int(time.time()) + 8 * 3600}).encode()).decode().rstrip("=")
        sig = hmac.new(self.secret, body.encode(), "sha256").hexdigest()
        return f"standin.{body}.{sig}"

    def _user(self, request: web.Request) -> tuple[dict[str, Any] | None, str]:
        """The authenticated user and how ("key" or "jwt"), or (None, why)."""
        admin = self.state["admin"]
        key = request.headers.get("X-API-Key")
        if key:
            digest = hashlib.sha256(key.encode()).hexdigest()
            if admin and any(k["digest"] == digest for k in self.state["keys"]):
                return admin, "key"
            return None, "Invalid API key"
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            parts = auth[7:].split(".")
            if len(parts) == 3 and hmac.compare_digest(parts[2], hmac.new(self.secret, parts[1].encode(), "sha256").hexdigest()):
                claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
                if claims["exp"] > time.time() and admin and admin["Id"] == claims["id"]:
                    return admin, "jwt"
            return None, "Invalid JWT token"
        return None, "Unauthorized"

    def _endpoint(self, ident: Any) -> dict[str, Any] | None:
        return next((e for e in self.state["endpoints"] if str(e["Id"]) == str(ident)), None)

    def _view(self, stack: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in stack.items() if k not in ("content", "pulled")}

    # -------------------------------------------------------------- routes

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record, self._auth])
        r = app.router
        r.add_get("/api/system/status", self.status)
        r.add_get("/api/users/admin/check", self.admin_check)
        r.add_post("/api/users/admin/init", self.admin_init)
        r.add_post("/api/auth", self.auth)
        r.add_get("/api/users/me", self.me)
        r.add_post("/api/users/{id}/tokens", self.token)
        r.add_get("/api/endpoints", self.endpoints)
        r.add_post("/api/endpoints", self.endpoint_create)
        r.add_put("/api/endpoints/{id}", self.endpoint_update)
        r.add_get("/api/tags", self.tags)
        r.add_post("/api/tags", self.tag_create)
        r.add_get("/api/stacks", self.stacks)
        r.add_post("/api/stacks/create/standalone/string", self.stack_create)
        r.add_put("/api/stacks/{id}", self.stack_update)
        r.add_get("/api/stacks/{id}/file", self.stack_file)
        r.add_delete("/api/stacks/{id}", self.stack_delete)
        return app

    PUBLIC = ("/api/system/status", "/api/users/admin/check", "/api/users/admin/init", "/api/auth")

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        import asyncio

        self.requests.append((request.method, request.path_qs))
        fault = self._fault(request)
        if fault is None:
            return await handler(request)
        delay = float(fault.get("delay") or 0)
        answer: web.StreamResponse | None = None
        if fault.get("when") == "after":
            answer = await handler(request)
        if delay:
            task = asyncio.current_task()
            if task is not None:
                self._delayed.add(task)
            try:
                await asyncio.sleep(delay)
            finally:
                self._delayed.discard(task)
        if fault.get("status"):
            return _error(int(fault["status"]), str(fault.get("message") or "fault injected by the stand-in"))
        return answer if answer is not None else await handler(request)

    def cancel_delays(self) -> None:
        """Stop holding requests (the server is stopping: a held reply would hold its shutdown too)."""
        for task in list(self._delayed):
            task.cancel()

    def _fault(self, request: web.Request) -> dict[str, Any] | None:
        """The first fault rule (portainer-faults.json) this request meets, counted; None for most requests."""
        if self.state_file is None:
            return None
        path = self.state_file.parent / FAULTS_FILE
        try:
            st = path.stat()
            seen = (st.st_mtime, st.st_size)
            if seen != self._faults_seen:
                rules = json.loads(path.read_text())
                self._faults = [dict(r, hits=0) for r in rules] if isinstance(rules, list) else []
                self._faults_seen = seen
        except (OSError, ValueError):
            self._faults, self._faults_seen = [], None
        for rule in self._faults:
            if rule.get("method", "*") not in ("*", request.method):
                continue
            if not re.search(str(rule.get("path", "")), request.path):
                continue
            if rule.get("times") is not None and rule["hits"] >= int(rule["times"]):
                continue
            rule["hits"] += 1
            return rule
        return None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in self.PUBLIC:
            user, how = self._user(request)
            if user is None:
                return _error(401, how)
            request[USER], request[AUTH] = user, how
        response = await handler(request)
        if request.method != "GET":
            self._save()
        return response

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"Version": VERSION, "InstanceID": "phoenix-standin"})

    async def admin_check(self, request: web.Request) -> web.Response:
        if self.state["admin"]:
            return web.Response(status=204)
        return _error(404, "No administrator account found inside the database")

    async def admin_init(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.state["admin"] is not None:
            return _error(409, "An administrator user already exists")
        if not body.get("Username") or len(body.get("Password") or "") < PASSWORD_MIN:
            return _error(400, "Invalid request payload", "Password does not meet the requirements")
        self.state["admin"] = {"Id": 1, "Username": body["Username"], "password": self._hash(body["Password"])}
        return web.json_response({"Id": 1, "Username": body["Username"], "Role": 1})

    async def auth(self, request: web.Request) -> web.Response:
        body = await request.json()
        admin = self.state["admin"]
        if not admin or body.get("Username") != admin["Username"] or self._hash(body.get("Password") or "") != admin["password"]:
            return _error(422, "Invalid credentials")
        return web.json_response({"jwt": self._jwt(admin)})

    async def me(self, request: web.Request) -> web.Response:
        user = request[USER]
        return web.json_response({"Id": user["Id"], "Username": user["Username"], "Role": 1})

    async def token(self, request: web.Request) -> web.Response:
        if request[AUTH] != "jwt":
            return _error(401, "Auth not supported", "API keys cannot create API keys: log in first (POST /api/auth)")
        if str(request[USER]["Id"]) != request.match_info["id"]:
            return _error(403, "Permission denied to create user access token")
        body = await request.json()
        if not body.get("description"):
            return _error(400, "Invalid request payload", "invalid description: cannot be empty")
        if self._hash(body.get("password") or "") != request[USER]["password"]:
            return _error(403, "Invalid password")
        raw = "ptr_" + base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        ident = self.state["next"]["key"]
        self.state["next"]["key"] += 1
        self.state["keys"].append({"id": ident, "digest": hashlib.sha256(raw.encode()).hexdigest(),
                                   "description": body["description"]})
        return web.json_response({"rawAPIKey": raw, "apiKey": {"id": ident, "userId": request[USER]["Id"],
                                                                "description": body["description"], "prefix": raw[:7]}},
                                 status=201)

    async def tags(self, request: web.Request) -> web.Response:
        return web.json_response(self.state["tags"])

    async def tag_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = str(body.get("Name") or body.get("name") or "")
        if not name:
            return _error(400, "Invalid request payload", "invalid tag name")
        if any(t["Name"] == name for t in self.state["tags"]):
            return _error(409, "This name is already associated to a tag")
        tag = {"ID": self.state["next"]["tag"], "Name": name, "Endpoints": {}, "EndpointGroups": {}}
        self.state["next"]["tag"] += 1
        self.state["tags"].append(tag)
        return web.json_response(tag)

    async def endpoints(self, request: web.Request) -> web.Response:
        return web.json_response(self.state["endpoints"])

    async def endpoint_update(self, request: web.Request) -> web.Response:
        """PUT /api/endpoints/{id} (endpoint_update.go): the JSON payload's fields that are given replace the
        environment's; the stand-in keeps Name and TagIDs (Go reads JSON keys case-insensitively), and the tags'
        Endpoints maps follow, as the real handler updates them."""
        try:
            ident = int(request.match_info["id"])
            body = await request.json()
        except (ValueError, json.JSONDecodeError):
            return _error(400, "Invalid request payload", "invalid environment identifier or payload")
        endpoint = next((e for e in self.state["endpoints"] if e["Id"] == ident), None)
        if endpoint is None:
            return _error(404, "Unable to find an environment with the specified identifier inside the database")
        given = {str(k).lower(): v for k, v in (body or {}).items()}
        if "tagids" in given:
            try:
                tag_ids = [int(t) for t in given["tagids"] or []]
            except (ValueError, TypeError):
                return _error(400, "Invalid request payload", "invalid TagIDs")
            if any(not any(t["ID"] == i for t in self.state["tags"]) for i in tag_ids):
                return _error(404, "Unable to find a tag inside the database")
            for t in self.state["tags"]:
                t["Endpoints"].pop(str(ident), None)
                if t["ID"] in tag_ids:
                    t["Endpoints"][str(ident)] = True
            endpoint["TagIds"] = tag_ids
        if given.get("name"):
            if any(e["Name"] == given["name"] and e["Id"] != ident for e in self.state["endpoints"]):
                return _error(409, "Name is not unique")
            endpoint["Name"] = str(given["name"])
        return web.json_response(endpoint)

    def _agent_answers(self, url: str) -> str | None:
        """Why the agent at tcp://host:port does not answer as an agent must, or None."""
        if self.agents == "simulated":
            return None
        m = re.fullmatch(r"tcp://([^:/]+):(\d+)", url)
        if not m:
            return f"invalid environment URL {url!r}"
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # agents use self-signed certificates
        try:
            with urllib.request.urlopen(f"https://{m[1]}:{m[2]}/ping", timeout=5, context=context) as answer:
                headers = answer.headers
        except OSError as e:
            return f"unable to reach the agent: {e}"
        if not headers.get("Portainer-Agent-Version") or not headers.get("Portainer-Agent-Platform"):
            return "the environment does not answer as a Portainer agent"
        return None

    async def endpoint_create(self, request: web.Request) -> web.Response:
        form = await request.post()
        name, kind, url = str(form.get("Name") or ""), str(form.get("EndpointCreationType") or ""), str(form.get("URL") or "")
        if not name:
            return _error(400, "Invalid request payload", "invalid environment name")
        if any(e["Name"] == name for e in self.state["endpoints"]):
            return _error(409, "Name is not unique")
        if kind == str(TYPE_DOCKER):
            url = url or "unix:///var/run/docker.sock"
            if not url.startswith("unix://"):
                return _error(400, "Invalid request payload", "the stand-in registers local Docker by its socket only")
        elif kind == str(TYPE_AGENT):
            why = self._agent_answers(url)
            if why:
                return _error(500, "Unable to get environment type", why)
        else:
            return _error(400, "Invalid request payload", "invalid environment type")
        try:
            tag_ids = [int(t) for t in json.loads(str(form.get("TagIds") or "[]"))]
        except (ValueError, TypeError):
            return _error(400, "Invalid request payload", "invalid TagIds parameter")
        if any(not any(t["ID"] == i for t in self.state["tags"]) for i in tag_ids):
            return _error(404, "Unable to find a tag inside the database")
        ident = self.state["next"]["endpoint"]
        self.state["next"]["endpoint"] += 1
        endpoint = {"Id": ident, "Name": name, "Type": int(kind), "URL": url, "Status": 1, "TagIds": tag_ids}
        for t in self.state["tags"]:
            if t["ID"] in tag_ids:
                t["Endpoints"][str(ident)] = True
        self.state["endpoints"].append(endpoint)
        return web.json_response(endpoint)

    async def stacks(self, request: web.Request) -> web.Response:
        found = self.state["stacks"]
        if request.query.get("filters"):
            wanted = json.loads(request.query["filters"]).get("EndpointID")
            found = [s for s in found if wanted is None or s["EndpointId"] == int(wanted)]
        return web.json_response([self._view(s) for s in found])

    def _compose_problem(self, content: str) -> str | None:
        import yaml

        try:
            data = yaml.safe_load(content)
        except yaml.YAMLError as e:
            return f"invalid Compose file: {e}"
        if not isinstance(data, dict) or not isinstance(data.get("services"), dict) or not data["services"]:
            return "invalid Compose file: no services"
        if self.compose_schema is not None:
            import jsonschema

            try:
                jsonschema.Draft7Validator(json.loads(self.compose_schema.read_text())).validate(data)
            except jsonschema.ValidationError as e:
                return f"invalid Compose file: {e.message}"
        return None

    async def stack_create(self, request: web.Request) -> web.Response:
        endpoint = self._endpoint(request.query.get("endpointId"))
        if endpoint is None:
            return _error(404, "Unable to find an environment with the specified identifier inside the database")
        body = await request.json()
        name = normalise(str(body.get("Name") or ""))
        if not name:
            return _error(400, "Invalid request payload", "invalid stack name")
        if not body.get("StackFileContent"):
            return _error(400, "Invalid request payload", "invalid stack file content")
        if any(s["Name"] == name and s["EndpointId"] == endpoint["Id"] for s in self.state["stacks"]):
            return _error(409, f"A stack with the normalized name '{name}' already exists")
        problem = self._compose_problem(body["StackFileContent"])
        if problem:
            return _error(500, "Unable to deploy stack", problem)
        ident = self.state["next"]["stack"]
        self.state["next"]["stack"] += 1
        now = int(time.time())
        stack = {"Id": ident, "Name": name, "Type": 2, "EndpointId": endpoint["Id"], "Env": list(body.get("Env") or []),
                 "Status": 1, "CreationDate": now, "UpdateDate": 0, "content": body["StackFileContent"]}
        self.state["stacks"].append(stack)
        return web.json_response(self._view(stack))

    def _stack(self, request: web.Request) -> dict[str, Any] | None:
        return next((s for s in self.state["stacks"] if str(s["Id"]) == request.match_info["id"]), None)

    async def stack_update(self, request: web.Request) -> web.Response:
        stack = self._stack(request)
        if stack is None:
            return _error(404, "Unable to find a stack with the specified identifier inside the database")
        if str(stack["EndpointId"]) != request.query.get("endpointId"):
            return _error(400, "Invalid query parameter: endpointId")
        body = await request.json()
        if not body.get("StackFileContent"):
            return _error(400, "Invalid request payload", "invalid stack file content")
        problem = self._compose_problem(body["StackFileContent"])
        if problem:
            return _error(500, "Unable to deploy stack", problem)
        stack.update({"content": body["StackFileContent"], "Env": list(body.get("Env") or []), "UpdateDate": int(time.time()),
                      "pulled": bool(body.get("PullImage"))})
        return web.json_response(self._view(stack))

    async def stack_file(self, request: web.Request) -> web.Response:
        stack = self._stack(request)
        if stack is None:
            return _error(404, "Unable to find a stack with the specified identifier inside the database")
        return web.json_response({"StackFileContent": stack["content"]})

    async def stack_delete(self, request: web.Request) -> web.Response:
        stack = self._stack(request)
        if stack is None:
            return _error(404, "Unable to find a stack with the specified identifier inside the database")
        self.state["stacks"].remove(stack)
        return web.Response(status=204)


class Served:
    """The stand-in served on its own (tests, a live demo): over HTTPS on host, in a thread with its own event loop."""

    def __init__(self, standin: PortainerStandin, certfile: Path, keyfile: Path, host: str = "127.0.0.1"):
        self.standin, self.certfile, self.keyfile, self.host = standin, certfile, keyfile, host
        self.url = ""

    def __enter__(self) -> Served:
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start() -> None:
            self.runner = web.AppRunner(self.standin.app(), access_log=None)
            await self.runner.setup()
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.certfile), str(self.keyfile))
            site = web.TCPSite(self.runner, self.host, 0, ssl_context=context)
            await site.start()
            self.url = f"https://{self.host}:{self.runner.addresses[0][1]}"

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, name="portainer-standin", daemon=True)
        self.thread.start()
        if not ready.wait(30):
            raise RuntimeError("the Portainer stand-in did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
