"""The suite's order: tests marked slow (real root file systems, systemd, Docker) first, so that on two workers the
long ones start early and the many short ones fill in around them, instead of one long test ending the run alone.
xdist's load scheduling sends each worker a chunk of consecutive tests first, so a module's slow tests usually share
one worker and its module fixtures (a booted guest). (`--dist loadgroup` would say so outright, but xdist 3.8 marks
groups in `_nodeid`, which pytest 9.2's nodeid no longer reads.)"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the order within each group stays
