"""The record Phoenix keeps with each stack it deploys, in the stack's own Env on Portainer (pure).

One entry, `PHOENIX_STACK_RECORD=v2.<payload>.<signature>`: the payload is base64url JSON of the stack's name,
identity, build and inputs' digests, the guest, and its environment's identity, build and Portainer id; the
signature is its HMAC with Phoenix's key (owner.py). Base64url and hex keep the value free of quotes, `$` and `#`,
which Compose's env files would read. Secret values are in it only as keyed digests, never in clear.

A stack is Phoenix's only when its record verifies with the key and names the stack and the environment it is on:
a record typed or copied onto a stack by hand (no signature, a wrong one, or made for another stack), one signed
with another key (the admin password was changed) and an earlier Phoenix's unsigned `v1.` record are not, and why
is kept (StackFacts.why) for the message that refuses it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from .owner import sign, verifies

MARK = "PHOENIX_STACK_RECORD"
PREFIX = "v2."
V1 = "v1."

UNSIGNED_V1 = ("its record is an earlier Phoenix's unsigned one (v1.), which anyone could have written, so Phoenix "
               "does not trust it")
OTHER_KEY = ("its record is signed, but not with Phoenix's key, which is made from the Portainer admin password: if "
             "secrets.portainer_password_file was changed since it was deployed, that is the likely cause (put the "
             "password it was deployed with back in that file, and it is Phoenix's again)")
UNSIGNED = "its record carries no valid signature (typed or copied by hand), so it is not Phoenix's"
UNREADABLE = "its record is not one Phoenix can read"
COPIED = "its record was made for another stack (copied), so it is not this one's"


@dataclass(frozen=True)
class EnvFacts:
    """A Portainer environment Phoenix registered for a guest, as the stacks deployed to it record it."""

    identity: str
    build_id: str
    endpoint: int
    building: bool = False
    owner: str | None = None


@dataclass(frozen=True)
class StackFacts:
    """A stack on Portainer: Phoenix's (with its record) or not (identity None, phoenix False)."""

    stack_id: int
    name: str
    endpoint: int
    phoenix: bool
    identity: str | None = None
    build_id: str | None = None
    parent_build: str | None = None
    guest: int | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    env: EnvFacts | None = None
    updated: int = 0
    building: bool = False
    owner: str | None = None
    why: str = ""  # why a stack with a record is not Phoenix's ("" when it has none: made by hand)
    claims: int | None = None  # the guest a record that does not verify names: only to say why it is refused


def encode(data: dict[str, Any], key: bytes) -> str:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    payload = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"{PREFIX}{payload}.{sign(key, payload)}"


def _json(body: str) -> dict[str, Any] | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def decode(value: str) -> dict[str, Any] | None:
    """The record's data, signature unchecked (for reading it; verified() says whether it is Phoenix's)."""
    if not value.startswith(PREFIX):
        return None
    return _json(value[len(PREFIX):].partition(".")[0])


def verified(value: str, key: bytes) -> tuple[dict[str, Any] | None, str]:
    """The record's data when it verifies with the key, else None and why not."""
    if value.startswith(V1):
        return None, UNSIGNED_V1
    if not value.startswith(PREFIX):
        return None, UNREADABLE
    payload, dot, signature = value[len(PREFIX):].partition(".")
    data = _json(payload)
    if not dot or not signature:
        return None, UNSIGNED
    if not verifies(key, payload, signature):
        ok_hex = len(signature) == 64 and all(c in "0123456789abcdef" for c in signature)
        return None, OTHER_KEY if data is not None and ok_hex else UNSIGNED
    return (data, "") if data is not None else (None, UNREADABLE)


def parse(stack: dict[str, Any], key: bytes) -> StackFacts:
    """A stack of `GET /api/stacks` as facts: Phoenix's only when its record verifies with the key and names this
    stack and its environment."""
    env = {str(e.get("name")): str(e.get("value")) for e in stack.get("Env") or [] if isinstance(e, dict)}
    sid, name, endpoint = int(stack["Id"]), str(stack["Name"]), int(stack["EndpointId"])
    updated = int(stack.get("UpdateDate") or stack.get("CreationDate") or 0)
    if MARK not in env:
        return StackFacts(sid, name, endpoint, False, updated=updated)
    data, why = verified(env[MARK], key)
    if data is None:
        return StackFacts(sid, name, endpoint, False, updated=updated, why=why, claims=_claimed(env[MARK]))
    try:
        e = data["env"]
        envfacts = EnvFacts(str(e["identity"]), str(e["build"]), int(e["endpoint"]))
        if envfacts.endpoint != endpoint or data["name"] != name:  # a record copied onto another stack
            return StackFacts(sid, name, endpoint, False, updated=updated, why=COPIED)
        return StackFacts(sid, name, endpoint, True, identity=str(data["identity"]), build_id=str(data["build"]),
                          parent_build=data.get("parent_build"), guest=int(data["guest"]),
                          inputs=dict(data.get("inputs") or {}), env=envfacts, updated=updated)
    except (KeyError, TypeError, ValueError):
        return StackFacts(sid, name, endpoint, False, updated=updated, why=UNREADABLE)


def _claimed(value: str) -> int | None:
    """The guest an unverified record names (v1 or v2), never trusted: it only lets the refusal be said in time."""
    body = value[len(V1):] if value.startswith(V1) else value[len(PREFIX):] if value.startswith(PREFIX) else ""
    data = _json(body.partition(".")[0]) if body else None
    guest = data.get("guest") if data is not None else None
    return guest if isinstance(guest, int) and not isinstance(guest, bool) else None


def make(*, name: str, guest: int, identity: str, build: str, parent_build: str | None, inputs: dict[str, str],
         env: EnvFacts, key: bytes) -> dict[str, str]:
    """The Env entry for the stack of this name deployed now, signed with the key."""
    return {"name": MARK, "value": encode({"name": name, "guest": guest, "identity": identity, "build": build,
                                            "parent_build": parent_build, "inputs": inputs,
                                            "env": {"identity": env.identity, "build": env.build_id,
                                                    "endpoint": env.endpoint}}, key)}
