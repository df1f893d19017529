"""Clone turns: one clone per parent at a time, the child with the longest chain below it first."""

from __future__ import annotations

import threading
import time

from phoenix.clones import CloneTurns, chain_lengths

# the example estate: 900 -> 901 -> 920 -> 950, 900 -> 902 -> 910
PARENTS = {900: None, 901: 900, 902: 900, 920: 901, 910: 902, 950: 920}


def test_chain_lengths():
    assert chain_lengths(PARENTS) == {900: 4, 901: 3, 920: 2, 950: 1, 902: 2, 910: 1}
    assert chain_lengths({1: None}) == {1: 1}


def bake(turns: CloneTurns, ctid: int, order: list[int], delay: float = 0.0, hold: float = 0.05) -> threading.Thread:
    """A worker as Run.execute runs it: started, its clone turn, finished."""

    def work() -> None:
        time.sleep(delay)
        turns.started(ctid)
        try:
            with turns.turn(ctid):
                order.append(ctid)
                time.sleep(hold)
                order.append(-ctid)  # the clone is done
        finally:
            turns.finished(ctid)

    t = threading.Thread(target=work)
    t.start()
    return t


def test_the_longer_chain_clones_first_even_when_it_asks_last():
    turns, order = CloneTurns(PARENTS), []
    turns.expect(901)
    turns.expect(902)
    late, early = bake(turns, 901, order, delay=0.1), bake(turns, 902, order)
    early.join(5)
    late.join(5)
    assert order == [901, -901, 902, -902]


def test_one_clone_per_parent_at_a_time_and_other_parents_are_not_held_up():
    turns, order = CloneTurns({1: None, 2: 1, 3: 1, 4: None, 5: 4}), []
    for c in (2, 3, 5):
        turns.expect(c)
    threads = [bake(turns, c, order, hold=0.2) for c in (2, 3, 5)]
    for t in threads:
        t.join(5)
    first, second = (2, 3) if order.index(2) < order.index(3) else (3, 2)  # equal chains: as they come
    assert order.index(-first) < order.index(second)  # one clone of parent 1 at a time
    assert order.index(5) < order.index(-first)  # 5 (another parent) cloned meanwhile


def test_a_sibling_that_ends_without_cloning_holds_no_one_up():
    turns, order = CloneTurns(PARENTS), []
    turns.expect(901)
    turns.expect(902)
    t0 = time.monotonic()
    waiting = bake(turns, 902, order)
    time.sleep(0.1)
    turns.started(901)
    turns.finished(901)  # e.g. its bake failed before the clone
    waiting.join(5)
    assert order == [902, -902] and time.monotonic() - t0 < 1


def test_a_sibling_announced_but_never_started_is_waited_for_only_the_grace():
    turns, order = CloneTurns(PARENTS, grace=0.3), []
    turns.expect(901)  # doit checked it, then stopped on a failure elsewhere and never ran it
    turns.expect(902)
    t0 = time.monotonic()
    bake(turns, 902, order).join(5)
    assert order == [902, -902] and 0.25 <= time.monotonic() - t0 < 2


def test_a_started_sibling_is_waited_for_past_the_grace():
    turns, order = CloneTurns(PARENTS, grace=0.1), []
    turns.expect(901)
    turns.expect(902)
    turns.started(901)  # its worker runs (say, still destroying its old guest)
    waiting = bake(turns, 902, order)
    time.sleep(0.4)
    assert order == []
    first = bake(turns, 901, order)
    first.join(5)
    waiting.join(5)
    assert order == [901, -901, 902, -902]


def test_siblings_with_equal_chains_do_not_wait_for_each_other():
    """200 app containers cloned from one parent: none waits for one that has no worker yet."""
    turns, order = CloneTurns({1: None, **{c: 1 for c in range(10, 20)}}, grace=30), []
    for c in range(10, 20):
        turns.expect(c)
    t0 = time.monotonic()
    bake(turns, 19, order).join(5)
    assert order == [19, -19] and time.monotonic() - t0 < 1


def test_in_doits_main_thread_an_unstarted_sibling_is_not_waited_for():
    """`doit -n 1` checks and runs tasks in its main thread: nothing else can start while 902 waits."""
    turns, order = CloneTurns(PARENTS, grace=30), []
    turns.expect(901)
    turns.expect(902)
    t0 = time.monotonic()
    turns.started(902)
    with turns.turn(902):
        order.append(902)
    assert order == [902] and time.monotonic() - t0 < 1


def test_the_first_check_of_a_parents_children_announces_those_in_scope_that_bake():
    """doit may check 902 before 901: its check announces 901 too, so 901 still clones first."""
    turns, order, asked = CloneTurns(PARENTS), [], []

    def bakes(ctid: int) -> bool:
        asked.append(ctid)
        return True

    turns.announce(902, {900, 901, 902, 920, 950, 910}, bakes)
    turns.announce(901, {900, 901, 902, 920, 950, 910}, bakes)  # the sibling's own check asks no one again
    assert asked == [901]
    late, early = bake(turns, 901, order, delay=0.1), bake(turns, 902, order)
    early.join(5)
    late.join(5)
    assert order == [901, -901, 902, -902]


def test_a_sibling_outside_the_scope_or_with_nothing_to_bake_is_not_announced():
    for scope, bakes in (({900, 902, 910}, lambda c: True), (set(PARENTS), lambda c: False)):
        turns, order = CloneTurns(PARENTS, grace=30), []
        turns.announce(902, scope, bakes)
        t0 = time.monotonic()
        bake(turns, 902, order).join(5)
        assert order == [902, -902] and time.monotonic() - t0 < 1


def test_chain_lengths_of_a_very_long_chain():
    """Iterative: a chain of 5000 layers (the recursive version failed beyond about 330)."""
    parents = {i: (i - 1 if i else None) for i in range(5000)}
    lengths = chain_lengths(parents)
    assert lengths[0] == 5000 and lengths[4999] == 1
