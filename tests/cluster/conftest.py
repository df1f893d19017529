"""A checkout of the cluster example (etc/cluster/) against a simulated three-node cluster."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.core.conftest import REPO, Checkout, audited

from .audit import audit_cluster, volumes

NODES = ("pve1", "pve2", "pve3")


class ClusterCheckout(Checkout):
    """The example estate with etc/cluster/'s configs over etc/, on a simulated cluster of pve1, pve2, pve3."""

    def __init__(self, root: Path, sim_options: dict | None = None, *, vms: bool = False):
        super().__init__(root, {"nodes": NODES, **(sim_options or {})}, vms=vms)
        for path in (REPO / "etc" / "cluster").glob("*.json"):
            shutil.copy(path, self.root / "etc" / path.name)

    def on(self, vmid: int) -> str:
        """The member a guest is on."""
        guest = self.pve.ct(vmid) or self.pve.vm(vmid)
        assert guest is not None, f"{vmid} is not on the cluster"
        return guest.node


@contextmanager
def cluster_audited(co: ClusterCheckout) -> Iterator[ClusterCheckout]:
    """audited(), and the cluster's own rules after (tests/cluster/audit.py)."""
    with audited(co):
        everywhere = volumes(co.pve)
        yield co
        audit_cluster(co.pve, everywhere)


@pytest.fixture
def cluster(tmp_path: Path):
    with cluster_audited(ClusterCheckout(tmp_path / "phoenix")) as co:
        yield co


@pytest.fixture
def built_cluster(cluster: ClusterCheckout) -> ClusterCheckout:
    result = cluster.doit()
    assert result.rc == 0, result.output
    return cluster
