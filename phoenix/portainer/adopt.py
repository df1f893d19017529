"""`phoenix adopt ID`: the Portainer environment and stacks of a guest, made by an earlier Phoenix (an unsigned `v1.`
record, an unkeyed tag), by a person, or signed with a previous admin password's key, handed to Phoenix on purpose.

The environment at the guest's URL gets Phoenix's keyed tag; each stack of the config's name on it gets a record
signed with Phoenix's key that says it was adopted (identity `adopted`), sent with the stack's own file and
variables (no prune, no pull: its containers are left as they are). Nothing is removed. The next run takes them as
Phoenix's, finds them built from other inputs, and brings them to the config (validated before the redeploy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import PhoenixError
from . import record
from .deploy import LOCAL_URL

if TYPE_CHECKING:
    from .client import Portainer
    from .listing import Listing

ADOPTED = "adopted"   # the identity and build of an adopted stack's record: never a layer's, so the next run redeploys


def adopt(client: Portainer, listing: Listing, *, guest: int, url: str, stacks: list[str]) -> list[str]:
    """Adopt the environment at url ("" for the server's own Docker) and these stacks (names as Portainer keeps them)
    on it; what was done, one line each."""
    from .owner import env_tag

    target = url or LOCAL_URL
    found = next((e for e in client.endpoints() if e.get("URL") == target), None)
    if found is None:
        raise PhoenixError(f"Portainer has no environment at {target}: nothing to adopt (the next run registers "
                           "Phoenix's own)")
    endpoint, label = int(found["Id"]), f"environment {found.get('Name')!r} (id {found['Id']})"
    lines = []
    if url:
        tag = env_tag(listing.key, url)
        tags = [int(t) for t in found.get("TagIds") or []]
        tid = client.tag(tag)
        if tid in tags:
            lines.append(f"{label} at {url} is Phoenix's already")
        else:
            client.call("PUT", f"/api/endpoints/{endpoint}", body={"TagIDs": [*tags, tid]})
            lines.append(f"{label} at {url} adopted: it carries Phoenix's tag {tag}")
    else:
        lines.append(f"{label} is the server's own Docker: Phoenix's already")
    on_server = {int(s["Id"]): s for s in client.stacks() if int(s.get("EndpointId", -1)) == endpoint}
    for name in stacks:
        facts = next((s for s in listing.stacks if s.endpoint == endpoint and s.name == name), None)
        raw = on_server.get(facts.stack_id) if facts is not None else None
        if facts is None or raw is None:
            lines.append(f"stack {name}: not on {label}; the next run deploys it")
            continue
        if facts.phoenix:
            lines.append(f"stack {name} (id {facts.stack_id}) is Phoenix's already")
            continue
        content = str(client.call("GET", f"/api/stacks/{facts.stack_id}/file")["StackFileContent"])
        env = [e for e in raw.get("Env") or [] if isinstance(e, dict) and e.get("name") != record.MARK]
        env.append(record.make(name=name, guest=guest, identity=ADOPTED, build=ADOPTED, parent_build=None, inputs={},
                               env=record.EnvFacts(ADOPTED, ADOPTED, endpoint), key=listing.key))
        answer: dict[str, Any] = client.update_stack(facts.stack_id, endpoint, content, env, pull=False, prune=False)
        listing.deployed(answer)
        lines.append(f"stack {name} (id {facts.stack_id}) adopted: signed as Phoenix's, its containers as they were; "
                     "the next run brings it to the config")
    return lines
