"""The run's one Portainer listing (`GET /api/stacks`: every stack, with its Env), and what it says.

A no-op run decides the server, every environment and every stack from it: the server is set up when its token
works; an environment is registered as the stacks deployed to it record; a stack is Phoenix's when it carries its
record, signed with Phoenix's key (owner.py: made from the admin password file, read here as the token file is, with
the standard library). The listing is the standard library's GET when it can check what requests would (a CA file or a pinned
fingerprint), else the client's.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from ..errors import PhoenixError
from ..pve.counters import Counters
from .record import EnvFacts, StackFacts, parse
from .target import PortainerTarget

OK, NO_TOKEN, REFUSED = "ok", "no token", "token refused"


@dataclass
class Listing:
    """What Portainer has, kept current by the run's own deployments (thread-safe)."""

    state: str
    stacks: list[StackFacts] = field(default_factory=list)
    envs: dict[int, EnvFacts] = field(default_factory=dict)   # registered in this run, by guest
    key: bytes = field(default=b"", repr=False)               # Phoenix's ownership key (owner.py)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stack(self, guest: int, name: str) -> StackFacts | None:
        """Phoenix's stack of this name on the guest (the newest, should there be two)."""
        with self.lock:
            found = [s for s in self.stacks if s.phoenix and s.guest == guest and s.name == name]
        return max(found, key=lambda s: s.updated) if found else None

    def env(self, guest: int) -> EnvFacts | None:
        """The guest's environment: registered in this run, else as its newest Phoenix stack records it."""
        with self.lock:
            if guest in self.envs:
                return self.envs[guest]
            found = [s for s in self.stacks if s.phoenix and s.guest == guest and s.env is not None]
        return max(found, key=lambda s: s.updated).env if found else None

    def foreign(self, endpoint: int, name: str) -> StackFacts | None:
        """A stack of this name on the environment that Phoenix did not deploy."""
        with self.lock:
            return next((s for s in self.stacks if not s.phoenix and s.endpoint == endpoint and s.name == name), None)

    def claimed(self, guest: int, name: str) -> StackFacts | None:
        """A stack of this name, not Phoenix's, whose record (which does not verify) names the guest: an earlier
        Phoenix's, one signed with another key, or one typed by hand. Never used, only refused."""
        with self.lock:
            return next((s for s in self.stacks if not s.phoenix and s.claims == guest and s.name == name), None)

    def deployed(self, answer: dict[str, Any]) -> StackFacts:
        """A stack Phoenix just created or updated (Portainer's answer): it replaces the one listed."""
        facts = parse(answer, self.key)
        with self.lock:
            self.stacks = [s for s in self.stacks if s.stack_id != facts.stack_id] + [facts]
        return facts

    def removed(self, stack_id: int) -> None:
        with self.lock:
            self.stacks = [s for s in self.stacks if s.stack_id != stack_id]

    def registered(self, guest: int, env: EnvFacts) -> None:
        with self.lock:
            self.envs[guest] = env


def token(target: PortainerTarget) -> str | None:
    """The API token, or None when its file does not exist yet (a loose mode or an empty file: PhoenixError)."""
    from ..secrets import read_secret

    if not os.path.exists(target.token_file):
        return None
    return read_secret(target.token_file)


def read(target: PortainerTarget, counters: Counters) -> Listing:
    """Every stack on the server (one request), or why there is no listing yet (no token, token refused)."""
    key = token(target)
    if key is None:
        return Listing(NO_TOKEN)
    from .owner import key_of

    owner = key_of(target.password_file)  # before any request: a password file that cannot be read sends nothing
    from ..tlsget import get_json

    timed_out = 0
    try:
        found = get_json(target.url, "/api/stacks", {"X-API-Key": key}, verify=target.verify,
                         fingerprint=target.fingerprint, timeout=target.timeout, counters=counters)
    except PhoenixError:  # accepted and not answered in time: that was the first of the client's tries of a read
        found, timed_out = None, 1
    if not isinstance(found, list):
        from .client import READ_TIMEOUT_TRIES, Portainer, PortainerError  # what the standard library's GET left

        client = Portainer(target.url, key=key, verify=target.verify, fingerprint=target.fingerprint,
                           timeout=target.timeout, counters=counters)
        try:
            found = client.call("GET", "/api/stacks", read_timeouts=READ_TIMEOUT_TRIES - timed_out)
        except PortainerError as e:
            if e.status == 401:
                return Listing(REFUSED, key=owner)
            raise
    try:
        return Listing(OK, [parse(s, owner) for s in found], key=owner)
    except (KeyError, TypeError, ValueError) as e:
        raise PhoenixError(f"Portainer at {target.url} answered GET /api/stacks with a list Phoenix cannot read "
                           f"({type(e).__name__}: {e}): is this a Portainer server?") from None
