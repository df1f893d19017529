"""The planner's restore decision (pure): an archive of the identity a layer will have turns its bake into a restore."""

from __future__ import annotations

from dataclasses import dataclass

from phoenix.plan import Action, Planner
from phoenix.resources import Resource


@dataclass(frozen=True)
class Archive:
    archive: str
    build: str
    kind: str = "lxc"


def resources() -> dict[str, Resource]:
    a = Resource("ct900", "lxc", "a", None, "template", {"os_template": "1"}, {}, vmid=900)
    b = Resource("ct901", "lxc", "b", "ct900", "template", {"feature:nvidia": "2"}, {}, vmid=901)
    c = Resource("ct950", "lxc", "c", "ct901", "app", {"app:x": "3"}, {}, vmid=950)
    return {r.key: r for r in (a, b, c)}


def plan(store: dict[str, Archive]) -> dict[str, tuple[Action, str | None]]:
    res = resources()
    decisions = Planner(res, {}, store.get).plan(lambda r: None)
    return {k: (d.action, d.artifact.archive if d.artifact is not None else None) for k, d in decisions.items()}


def test_a_chain_restores_while_each_parent_is_restored_from_the_archive_its_child_was_made_on() -> None:
    res = resources()
    root = Archive("a.tar.zst", "build-a")
    mid = Archive("b.tar.zst", "build-b")
    store = {res["ct900"].identity(None): root, res["ct901"].identity("build-a"): mid}
    assert plan(store) == {"ct900": (Action.BUILD, "a.tar.zst"), "ct901": (Action.BUILD, "b.tar.zst"),
                           "ct950": (Action.BUILD, None)}
    # an archive of 901 made on another build of 900 is not 901's identity here
    assert plan({res["ct900"].identity(None): root, res["ct901"].identity("other"): mid})["ct901"] == (Action.BUILD, None)
    # a parent baked anew has a new build id, which no archive has: the child is baked
    assert plan({res["ct901"].identity(None): mid})["ct901"] == (Action.BUILD, None)
    # an archive of another kind restores nothing
    assert plan({res["ct900"].identity(None): Archive("a.vma.zst", "b", "qemu")})["ct900"] == (Action.BUILD, None)


def test_the_plan_says_where_it_restores_from() -> None:
    res = resources()
    d = Planner(res, {}, {res["ct900"].identity(None): Archive("a.tar.zst", "b")}.get).decide("ct900", lambda r: None)
    assert d.text == "restore from artifact a.tar.zst (not on the host)"
    assert d.summary == "ct900: restore from artifact a.tar.zst (not on the host)"
