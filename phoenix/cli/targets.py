"""Which resource a person means by what they typed: a task name, a guest id or a guest's name (pure)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from ..errors import PhoenixError
from ..resources import Resource


class UnknownTarget(PhoenixError):
    """Nothing in the estate goes by that name; the message suggests what might be meant."""


def resolve(resources: Mapping[str, Resource], word: str) -> Resource:
    """The resource a word names: its key ("ct950"), its guest id ("950") or its name ("vllmQwen3Coder")."""
    if word in resources:
        return resources[word]
    by_id = [r for r in resources.values() if r.vmid is not None and str(r.vmid) == word]
    by_name = [r for r in resources.values() if r.name.lower() == word.lower()]
    found = by_id or by_name
    if len(found) == 1:
        return found[0]
    names = [*resources, *(str(r.vmid) for r in resources.values() if r.vmid is not None),
             *(r.name for r in resources.values())]
    close = difflib.get_close_matches(word, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; the estate has {', '.join(resources) or 'nothing'}"
    if len(found) > 1:
        raise UnknownTarget(f"{word!r} names several resources ({', '.join(r.key for r in found)}): use the task name")
    raise UnknownTarget(f"no guest or task {word!r} in the estate (see `phoenix status`){hint}")


def of_kind(resources: Mapping[str, Resource], prefix: str) -> list[str]:
    """Every task whose key starts with prefix ("host:", "stack:", ...), in the estate's order."""
    return [k for k in resources if k.startswith(prefix)]
