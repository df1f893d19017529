"""The `phoenix` verbs on a cluster: start, stop and delete reach a guest on the member it is on, and deleting a
layer deletes its per-member copies with it (a copy is the layer's, never left behind)."""

from __future__ import annotations

import contextlib
import io

from .conftest import ClusterCheckout


def phoenix(co: ClusterCheckout, *args: str) -> tuple[int, str]:
    from phoenix.cli.main import main

    co.stop_sim()  # the verb's run starts the simulator of the state dir, as a second shell would
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["--project", str(co.root), *args], out=out)
    return rc, out.getvalue() + err.getvalue()


def test_start_stop_and_delete_reach_the_member_a_guest_is_on_and_a_layers_copies_go_with_it(
        built_cluster: ClusterCheckout) -> None:
    co = built_cluster
    assert co.on(950) == "pve2" and co.on(920) == "pve1" and co.pve.ct(200920) is not None  # 920's copy on pve2
    rc, said = phoenix(co, "stop", "950")
    assert rc == 0 and "ct950 (vllmQwen3Coder) stopped" in said, said
    assert co.pve.ct(950).status == "stopped"
    rc, said = phoenix(co, "start", "950")
    assert rc == 0 and co.pve.ct(950).status == "running", said

    rc, said = phoenix(co, "delete", "920", "--yes")
    assert rc == 1 and "has Phoenix guests cloned from it on the host: ct950" in said, said
    rc, said = phoenix(co, "delete", "920", "--with-children", "--yes")
    assert rc == 0, said
    lines = [line for line in said.splitlines() if line.startswith("phoenix: deleted ")]
    assert lines == ["phoenix: deleted ct950 (guest 950)", "phoenix: deleted copy of ct920 on pve2 (guest 200920)",
                     "phoenix: deleted ct920 (guest 920)"], said
    assert "ct950, ct920 are still in the config" in said, said
    assert all(co.pve.ct(v) is None for v in (950, 200920, 920)) and co.pve.ct(901) is not None
    again = co.doit()
    assert again.rc == 0 and co.on(950) == "pve2" and co.pve.ct(200920) is not None, again.output
