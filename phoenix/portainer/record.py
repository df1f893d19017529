"""The record Phoenix keeps with each stack it deploys, in the stack's own Env on Portainer (pure).

One entry, `PHOENIX_STACK_RECORD=v1.<base64url JSON>`: the stack's identity, build and inputs' digests, the guest,
and its environment's identity, build and Portainer id. Base64url keeps the value free of quotes, `$` and `#`, which
Compose's env files would read. Secret values are in it only as salted digests, never in clear.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

MARK = "PHOENIX_STACK_RECORD"
PREFIX = "v1."


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


def encode(data: dict[str, Any]) -> str:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(value: str) -> dict[str, Any] | None:
    if not value.startswith(PREFIX):
        return None
    body = value[len(PREFIX):]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def parse(stack: dict[str, Any]) -> StackFacts:
    """A stack of `GET /api/stacks` as facts (a record that does not parse: not Phoenix's)."""
    env = {str(e.get("name")): str(e.get("value")) for e in stack.get("Env") or [] if isinstance(e, dict)}
    sid, name, endpoint = int(stack["Id"]), str(stack["Name"]), int(stack["EndpointId"])
    updated = int(stack.get("UpdateDate") or stack.get("CreationDate") or 0)
    data = decode(env.get(MARK, ""))
    if data is None:
        return StackFacts(sid, name, endpoint, False, updated=updated)
    try:
        e = data["env"]
        envfacts = EnvFacts(str(e["identity"]), str(e["build"]), int(e["endpoint"]))
        if envfacts.endpoint != endpoint:  # a record copied onto a stack of another environment: not Phoenix's
            return StackFacts(sid, name, endpoint, False, updated=updated)
        return StackFacts(sid, name, endpoint, True, identity=str(data["identity"]), build_id=str(data["build"]),
                          parent_build=data.get("parent_build"), guest=int(data["guest"]),
                          inputs=dict(data.get("inputs") or {}), env=envfacts, updated=updated)
    except (KeyError, TypeError, ValueError):
        return StackFacts(sid, name, endpoint, False, updated=updated)


def make(*, guest: int, identity: str, build: str, parent_build: str | None, inputs: dict[str, str],
         env: EnvFacts) -> dict[str, str]:
    """The Env entry for a stack deployed now."""
    return {"name": MARK, "value": encode({"guest": guest, "identity": identity, "build": build,
                                            "parent_build": parent_build, "inputs": inputs,
                                            "env": {"identity": env.identity, "build": env.build_id,
                                                    "endpoint": env.endpoint}})}
