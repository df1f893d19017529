"""The simulator's saved state: a journal of what changed, compacted into state.json; crash safety; pools."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from phoenix.pve.client import Pve
from phoenix.sim.changes import EVERYTHING, Touched, task_touched, touched
from phoenix.sim.host import SimHost, served, spawn
from phoenix.sim.store import CT, JOURNAL_FILE, POOL, STATE_FILE, Store, dumps

from .conftest import Checkout

TEMPLATE = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
ALL = ("ct900", "ct901", "ct902", "ct910", "ct920", "ct950")


def create(client: Pve, vmid: int, **extra) -> None:
    client.run("POST", "nodes/pve1/lxc", vmid=vmid, ostemplate=TEMPLATE, hostname=f"guest{vmid}", storage="local-lvm", **extra)


def crash_image(host: SimHost, target: Path) -> Path:
    """The state dir as a simulator killed at this moment leaves it (its files, copied while it runs)."""
    shutil.copytree(host.dir, target)
    return target


# ------------------------------------------------------------------ persistence cost


def change_cost(state_dir: Path, guests: int) -> tuple[int, int, bool]:
    """Bytes the simulator writes for one config change on a host of this many guests: (counted, on disk,
    state.json left alone)."""
    host = SimHost(state_dir)
    ep = host.start()
    try:
        for i in range(guests):
            host.pve.add_ct(1000 + i, config={"hostname": f"guest{i:04d}", "memory": 512, "description": "x" * 300})
        host.save()
        client = Pve.of(ep)
        state = host.state_file.stat()
        files = sum(p.stat().st_size for p in host.dir.iterdir() if p.is_file())
        before = host.stats.bytes
        client.call("PUT", "nodes/pve1/lxc/1000/config", memory=1024)
        counted = host.stats.bytes - before
        on_disk = sum(p.stat().st_size for p in host.dir.iterdir() if p.is_file()) - files
        after = host.state_file.stat()
        untouched = (after.st_ino, after.st_mtime_ns, after.st_size) == (state.st_ino, state.st_mtime_ns, state.st_size)
        assert host.pve.ct(1000).config["memory"] == 1024
    finally:
        host.stop()
    return counted, on_disk, untouched


def test_a_change_writes_what_changed_not_the_whole_estate(tmp_path: Path):
    small = change_cost(tmp_path / "small", 10)
    large = change_cost(tmp_path / "large", 400)
    for counted, on_disk, untouched in (small, large):
        assert untouched  # state.json is not rewritten for a change
        assert 0 < counted < 2000 and on_disk == counted  # one guest's record, appended to the journal
    assert small[0] == large[0]  # the same change costs the same, whatever the size of the estate
    # and the change is saved: a simulator started on the state finds it
    again = SimHost(tmp_path / "large")
    again.start()
    try:
        assert again.pve.ct(1000).config["memory"] == 1024 and len(again.pve.cts) == 400
    finally:
        again.stop()


def test_the_journal_is_compacted_into_a_readable_state_file(tmp_path: Path):
    host = SimHost(tmp_path / "sim")
    client = Pve.of(host.start())
    try:
        create(client, 900)
        create(client, 901)
        client.call("PUT", "nodes/pve1/lxc/901/config", memory=2048)
        journal = [json.loads(line) for line in (host.dir / JOURNAL_FILE).read_text().splitlines()]
        assert {(e["kind"], e["id"]) for e in journal} >= {("ct", "900"), ("ct", "901")}
    finally:
        host.stop()
    assert (host.dir / JOURNAL_FILE).read_text() == ""  # compacted at stop
    text = (host.dir / STATE_FILE).read_text()
    data = json.loads(text)
    assert data["format"] == 1 and [c["vmid"] for c in data["cts"]] == [900, 901]
    assert data["cts"][1]["config"]["memory"] == 2048 and "vztmpl/" + TEMPLATE.split("/")[1] in data["volumes"]["local"]
    assert data["pools"] == {}
    assert sum(1 for line in text.splitlines() if '"vmid": 90' in line) == 2  # one guest per line


def test_a_state_file_of_the_previous_format_is_read(tmp_path: Path):
    """state.json as it was written before the journal (one line, no pools) loads as it did."""
    state = tmp_path / "sim"
    state.mkdir()
    ct = {"vmid": 905, "node": "pve1", "status": "stopped", "config": {"hostname": "old", "memory": 256}, "pending": {},
          "snapshots": {"base": {"memory": 256}}}
    (state / STATE_FILE).write_text(json.dumps({"format": 1, "cts": [ct], "volumes": {"local": {}}}, sort_keys=True))
    host = SimHost(state)
    host.start()
    try:
        assert host.pve.ct(905).config["hostname"] == "old" and host.pve.ct(905).snapshots == {"base": {"memory": 256}}
    finally:
        host.stop()


# ------------------------------------------------------------------ crash safety


def test_a_killed_served_simulator_restarts_with_its_guests(tmp_path: Path):
    co = Checkout(tmp_path / "phoenix")
    state = co.cache / "sim"
    proc = spawn(state, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        built = co.doit(own_sim=False)
        assert built.rc == 0 and set(built.outcomes().values()) == {"built"}, built.output
        found = served(state)
        assert found is not None
        client = Pve.of(found[0])
        client.call("PUT", "nodes/pve1/lxc/950/config", description="changed after the build")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert (state / "server.json").exists()  # killed: it could not clean up
    again = co.doit()  # a stale server.json is ignored: this run's own simulator loads the state
    try:
        assert again.rc == 0 and again.outcomes() == dict.fromkeys(ALL, "up-to-date"), again.output
        assert co.ct(950).config["description"] == "changed after the build"
    finally:
        co.stop_sim()


def test_a_damaged_journal_line_is_skipped_with_a_note(tmp_path: Path):
    host = SimHost(tmp_path / "sim")
    client = Pve.of(host.start())
    try:
        create(client, 900)
        create(client, 901)
        image = crash_image(host, tmp_path / "crashed")
    finally:
        host.stop()
    journal = image / JOURNAL_FILE
    lines = journal.read_text().splitlines(keepends=True)
    record = json.loads(lines[-1])["v"]
    assert record["vmid"] == 901
    later = dumps({"kind": "ct", "id": "902", "v": {**record, "vmid": 902}}) + "\n"
    # a damaged line in the middle, a good one after it, and a last line cut off by the kill
    journal.write_text("".join(lines) + "{not json\n" + later + later[: len(later) // 2])
    notes: list[str] = []
    restarted = SimHost(image, note=notes.append)
    restarted.start()
    try:
        assert sorted(ct.vmid for ct in restarted.pve.cts) == [900, 901, 902]
        n = len(lines)
        assert any(f"line {n + 1} is damaged" in note for note in notes), notes
        assert any(f"line {n + 3} is damaged (cut off)" in note for note in notes), notes
    finally:
        restarted.stop()


def test_a_damaged_state_file_is_kept_aside_and_the_journal_replayed(tmp_path: Path):
    host = SimHost(tmp_path / "sim")
    client = Pve.of(host.start())
    try:
        create(client, 900)
        image = crash_image(host, tmp_path / "crashed")
    finally:
        host.stop()
    (image / STATE_FILE).write_text('{"format": 1, "cts": [')
    notes: list[str] = []
    restarted = SimHost(image, note=notes.append)
    restarted.start()
    try:
        assert [ct.vmid for ct in restarted.pve.cts] == [900]  # from the journal
        assert (image / "state.json.damaged").read_text() == '{"format": 1, "cts": ['
        assert any("is damaged" in note and "state.json.damaged" in note for note in notes), notes
    finally:
        restarted.stop()


def test_replaying_a_journal_twice_gives_the_same_state(tmp_path: Path):
    """Killed between writing state.json and emptying the journal, the next start replays it over the new state."""
    notes: list[str] = []
    store = Store(tmp_path, notes.append)
    store.read()
    store.put({(CT, "900"): dumps({"vmid": 900, "config": {"memory": 1}}), (CT, "901"): dumps({"vmid": 901, "config": {}})})
    store.put({(CT, "900"): dumps({"vmid": 900, "config": {"memory": 2}}), (CT, "901"): None})
    store.put({(CT, "901"): dumps({"vmid": 901, "config": {"new": 1}}), (POOL, "lease"): dumps({"vmids": [900]})})
    journal = (tmp_path / JOURNAL_FILE).read_bytes()
    first = Store(tmp_path, notes.append).read()
    store.compact()
    (tmp_path / JOURNAL_FILE).write_bytes(journal)
    assert Store(tmp_path, notes.append).read() == first == {
        (CT, "900"): {"vmid": 900, "config": {"memory": 2}}, (CT, "901"): {"vmid": 901, "config": {"new": 1}},
        (POOL, "lease"): {"vmids": [900]}}
    assert notes == []
    store.close()


# ------------------------------------------------------------------ pools


def test_pools_are_saved(tmp_path: Path):
    host = SimHost(tmp_path / "sim")
    client = Pve.of(host.start())
    try:
        create(client, 900)
        client.call("POST", "pools", poolid="phoenix-lease", comment="run 4242 on host a")
        client.call("PUT", "pools/phoenix-lease", vms="900")
        client.call("POST", "pools", poolid="gone")
        client.call("DELETE", "pools/gone")
        image = crash_image(host, tmp_path / "crashed")  # saved as it changed, not only at stop
    finally:
        host.stop()
    for state in (host.dir, image):
        again = SimHost(state)
        again.start()
        try:
            assert again.pve.pools == {"phoenix-lease": {900}}
            assert again.pve.pool_info["phoenix-lease"] == {"comment": "run 4242 on host a", "storage": set()}
            assert again.pve.ct(900).pool == "phoenix-lease"
        finally:
            again.stop()


# ------------------------------------------------------------------ what a write touches


@pytest.mark.parametrize(("method", "path", "params", "want"), [
    ("PUT", "/api2/json/nodes/pve1/lxc/950/config", {}, Touched(frozenset({950}), False)),
    ("POST", "/api2/json/nodes/pve1/lxc/900/clone", {"newid": "901"}, Touched(frozenset({900, 901}), False)),
    ("POST", "/api2/extjs/nodes/pve1/lxc", {"vmid": 905}, Touched(frozenset({905}), False)),
    ("DELETE", "/api2/json/nodes/pve1/lxc/905", {}, Touched(frozenset({905}), False)),
    ("PUT", "/api2/json/pools/lease", {"vms": "900"}, Touched(frozenset(), False)),
    ("POST", "/api2/json/access/ticket", {}, Touched(frozenset(), False)),
    ("POST", "/phoenix/sim/unlock/950", {}, Touched(frozenset({950}), False)),
    ("POST", "/api2/json/nodes/pve1/storage/local/download-url", {}, EVERYTHING),
    ("POST", "/api2/json/nodes/pve1/stopall", {}, EVERYTHING),
    ("GET", "/api2/json/cluster/resources", {}, Touched(frozenset(), False)),
])
def test_what_a_write_may_change(method: str, path: str, params: dict, want: Touched):
    assert touched(method, path, params) == want


def test_what_a_task_may_change():
    assert task_touched(901, "900") == Touched(frozenset({900, 901}), False)  # a clone: the new guest and its source
    assert task_touched(None, "905") == Touched(frozenset({905}), False)
    assert task_touched(None, "local") == EVERYTHING


def test_the_journal_is_compacted_when_it_outgrows_four_times_the_state_file_and_1_mib(tmp_path: Path):
    """The README: state.json is rewritten whole only at the start or stop, or when the journal outgrows four times its
    size and 1 MiB (a small state is not rewritten every few changes)."""
    from phoenix.sim.store import MIN_JOURNAL

    def fill(store: Store, guests: int, pad: int) -> int:
        store.put({(CT, str(i)): dumps({"vmid": i, "pad": "x" * pad}) for i in range(guests)}, compact=True)
        return (store.dir / STATE_FILE).stat().st_size

    def journal_size_at_compaction(store: Store) -> int:
        """Change one guest (about 2 KB a change) until the journal is compacted: its size before that last change."""
        journal, reached = store.dir / JOURNAL_FILE, 0
        for n in range(10_000):
            before = store.stats.compactions
            store.put({(CT, "0"): dumps({"vmid": 0, "pad": "y" * 2000, "n": n})})
            if store.stats.compactions > before:
                assert journal.stat().st_size == 0
                return reached
            reached = journal.stat().st_size
        raise AssertionError(f"not compacted with a journal of {reached} bytes")

    small = Store(tmp_path / "small", note=lambda _: None)
    size = fill(small, 3, 100)
    assert 4 * size < MIN_JOURNAL
    assert MIN_JOURNAL - 2100 < journal_size_at_compaction(small) <= MIN_JOURNAL  # past 1 MiB, not past 4x its bytes
    assert json.loads((small.dir / STATE_FILE).read_text())["cts"][0]["pad"][0] == "y"

    big = Store(tmp_path / "big", note=lambda _: None)
    size = fill(big, 400, 1000)
    assert 4 * size > MIN_JOURNAL
    assert 4 * size - 2100 < journal_size_at_compaction(big) <= 4 * size  # past four times state.json
