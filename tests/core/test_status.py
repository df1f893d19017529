"""`phoenix status` and `doit plan` end with counts per state; status names each guest's member and a layer's copies on
other members (one listing); machine-readable output is that alone on stdout, notes go to stderr."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from phoenix.cli import status
from phoenix.doitx import current, tasks
from tests.cluster.conftest import ClusterCheckout

from .conftest import Checkout, audited, copy_project
from .test_phoenix_cli import phoenix


def status_rows(co: Checkout) -> list[dict[str, Any]]:
    """`phoenix status --json`'s rows, in-process on the checkout's simulator."""
    tasks.setup(co.root, process=False, config_dir=co.root / "etc", images_dir=co.root / "images",
                cache_dir=co.cache, out=io.StringIO(), sim_options=co.sim_options)
    run = current.RUN
    assert run is not None
    try:
        return status.rows(run)
    finally:
        run.close()


def test_status_json_is_json_alone_and_the_note_goes_to_stderr_once(tmp_path: Path):
    project = copy_project(tmp_path / "phoenix", stacks=True)  # its stacks write a secret inline: a note
    done = phoenix(project, "status", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)  # nothing but the JSON on stdout
    assert {r["state"] for r in rows} == {"absent"} and {r["node"] for r in rows} == {None}
    assert done.stderr.count("looks like a secret written inline") == 1, done.stderr
    table = phoenix(project, "status")
    assert "looks like a secret written inline" not in table.stdout + table.stderr  # validated once, then cached
    assert table.stdout.splitlines()[-1] == f"phoenix status: {len(rows)} resources: {len(rows)} absent; " \
                                            f"{len(rows)} not up to date", table.stdout


def test_plan_ends_with_counts_per_state(built: Checkout):
    built.edit_guest(950, memory_mb=49152)
    script = built.root / "images" / "features" / "docker.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    plan = built.doit("plan")
    assert plan.rc == 0, plan.output
    assert re.search(r"^phoenix plan: 3 of 6 resources to change \(2 rebuild, 1 update, 3 up-to-date\); \d+ API requests "
                     r"\(target: sim\)$", plan.output, re.M), plan.output


def test_status_names_each_guests_member_and_its_copies(built: Checkout):
    rows = {r["task"]: r for r in status_rows(built)}
    assert {r["node"] for r in rows.values()} == {"pve1"} and all(r["copy_of"] is None for r in rows.values())


@pytest.fixture
def built_cluster(tmp_path: Path):
    with audited(ClusterCheckout(tmp_path / "phoenix")) as co:
        result = co.doit()
        assert result.rc == 0, result.output
        yield co


def test_status_on_a_cluster_shows_members_and_layer_copies(built_cluster: ClusterCheckout):
    found = status_rows(built_cluster)
    rows = {r["task"]: r for r in found}
    assert {k: rows[k]["node"] for k in ("ct920", "ct950", "ct910")} == {"ct920": "pve1", "ct950": "pve2", "ct910": "pve3"}
    copy = rows["ct200920"]  # 920's copy on pve2 (node id 2), which 950 is cloned from
    assert copy["copy_of"] == "ct920" and copy["node"] == "pve2" and copy["up_to_date"], copy
    order = [r["task"] for r in found]
    assert order.index("ct200920") == order.index("ct920") + 1  # one listing: the copy follows its layer
    text = status.render(found, as_json=False)
    line = next(x for x in text.splitlines() if x.startswith("ct200920 "))
    assert re.search(r"\bcopy of ct920\s+pve2\s+stopped\b", line), text
    assert text.splitlines()[-1].endswith("; 1 layer copy on other nodes"), text
