"""Session fixture: a real single-node SLURM cluster (slurmctld + slurmd + munged), stopped at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cluster import PARTITION, Cluster, missing_binaries


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    missing = missing_binaries()
    if missing:
        pytest.skip(f"SLURM test cluster needs Debian's slurm-wlm and munge ({', '.join(missing)} missing)")
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster runs its daemons as root")
    cluster = Cluster(tmp_path_factory.mktemp("slurm-cluster"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(cluster.conf))
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
def partition(slurm_cluster: Cluster) -> str:
    return PARTITION
