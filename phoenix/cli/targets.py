"""Which resource a person means by what they typed: a task name, a guest id or a guest's name (pure)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

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
    hint = did_you_mean(word, names) or f"; the estate has {', '.join(resources) or 'nothing'}"
    if len(found) > 1:
        raise UnknownTarget(f"{word!r} names several resources ({', '.join(r.key for r in found)}): use the task name")
    raise UnknownTarget(f"no guest or task {word!r} in the estate (see `phoenix status`){hint}")


def did_you_mean(word: str, names: Iterable[str]) -> str:
    """'; did you mean ct950, ct910, ct901?': the closest names first (difflib, at most 3), '' when none is close."""
    close = difflib.get_close_matches(word, list(dict.fromkeys(names)), n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def unknown_task(word: str, names: Iterable[str]) -> str:
    """The one line for a task that does not exist: "no task 'ct951' (see `doit list`); did you mean ct950?"."""
    return f"no task {word!r} in this estate (see `doit list`){did_you_mean(word, names)}"


def of_kind(resources: Mapping[str, Resource], prefix: str) -> list[str]:
    """Every task whose key starts with prefix ("host:", "stack:", ...), in the estate's order."""
    return [k for k in resources if k.startswith(prefix)]
