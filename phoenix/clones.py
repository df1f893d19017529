"""Whose turn it is to clone from a parent.

Proxmox locks a container for the whole of a full clone from it, so the clones of one parent run one at
a time. When several children of one parent are baked in the same run (`doit -n 4`), a child with a
longer chain of layers below it clones before one with a shorter chain: that chain is the run's critical
path (in the example estate 901 goes before 902, because 920 and 950 wait for 901 and only 910 waits for
902). Children with chains of the same length take turns as they come.

A run announces the layers it is about to bake (`announce`: from doit's uptodate check, which doit makes in
its main thread before it hands the task to a worker, for the layer and its siblings in the run's scope),
marks each started when its action begins, and withdraws it when the action ends, however it ends. A clone
waits while a sibling with a longer chain is announced and has not cloned yet, but for one that has not
started only `grace` seconds after it was announced: doit may have no worker free for it, or may have
stopped on a failure elsewhere. In doit's main thread (`-n 1`) nothing else can start meanwhile, so a
sibling that has not started is not waited for at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping
from contextlib import contextmanager
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


def children_of(parents: Mapping[K, K | None]) -> dict[K, list[K]]:
    """Each layer's children (layers without children are left out)."""
    children: dict[K, list[K]] = {}
    for key, parent in parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(key)
    return children


def chain_lengths(parents: Mapping[K, K | None]) -> dict[K, int]:
    """Layers on the longest chain from each layer down to a leaf, the layer itself included.

    Iterative (a chain may be thousands of layers long): each layer after all its children."""
    children = children_of(parents)
    lengths: dict[K, int] = {}
    for root in parents:
        stack: list[tuple[K, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node in lengths:
                continue
            kids = children.get(node, [])
            if expanded or not kids:
                lengths[node] = 1 + max((lengths.get(c, 0) for c in kids), default=0)
                continue
            stack.append((node, True))
            stack += [(c, False) for c in kids if c not in lengths]
    return lengths


class CloneTurns(Generic[K]):
    """One clone per parent at a time; among siblings waiting to clone, the longest chain first."""

    def __init__(self, parents: Mapping[K, K | None], grace: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.parents = dict(parents)
        self._children = children_of(self.parents)
        self._chain = chain_lengths(self.parents)
        self.grace, self.clock = grace, clock
        self._cond = threading.Condition()
        self._expected: dict[K, float] = {}  # announced, not cloned yet -> when announced
        self._started: set[K] = set()
        self._cloning: set[K] = set()        # parents a clone is being made from
        self._announced: set[K] = set()      # parents whose children have been announced

    def expect(self, key: K) -> None:
        """The layer will be baked in this run (a clone if it has a parent)."""
        if self.parents.get(key) is not None:
            with self._cond:
                self._expected.setdefault(key, self.clock())

    def announce(self, key: K, scope: Collection[K], bakes: Callable[[K], bool]) -> None:
        """The layer will be baked, and so will each sibling in the run's scope that `bakes` says: doit checks
        them one by one, and the first check of a parent's children announces them all (once per parent)."""
        parent = self.parents.get(key)
        if parent is None:
            return
        self.expect(key)
        with self._cond:
            first = parent not in self._announced
            self._announced.add(parent)
        for sibling in self._children[parent] if first else ():
            if sibling != key and sibling in scope and bakes(sibling):  # bakes() is called outside the lock
                self.expect(sibling)

    def started(self, key: K) -> None:
        with self._cond:
            self._started.add(key)

    def finished(self, key: K) -> None:
        """The layer's action ended (built, failed or nothing to clone): it holds no one up any more."""
        with self._cond:
            self._expected.pop(key, None)
            self._started.discard(key)
            self._cond.notify_all()

    def _ahead(self, key: K, unstarted: bool) -> list[K]:
        """Siblings to let clone first: announced, with a longer chain, and started (or, if `unstarted`,
        announced less than the grace ago)."""
        parent, now = self.parents[key], self.clock()
        return [s for s, since in self._expected.items()
                if self.parents.get(s) == parent and self._chain[s] > self._chain[key]
                and (s in self._started or (unstarted and now - since < self.grace))]

    @contextmanager
    def turn(self, key: K) -> Iterator[None]:
        """Hold the parent's clone turn for the duration of the block."""
        parent = self.parents[key]
        assert parent is not None, f"{key} has no parent to clone from"
        unstarted = threading.current_thread() is not threading.main_thread()  # see the module's doc
        with self._cond:
            while parent in self._cloning or self._ahead(key, unstarted):
                self._cond.wait(timeout=min(self.grace, 0.5))  # woken on every change; the timeout ends a grace
            self._cloning.add(parent)
        try:
            yield
        finally:
            with self._cond:
                self._cloning.discard(parent)
                self._expected.pop(key, None)
                self._cond.notify_all()
