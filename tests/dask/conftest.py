"""A real ``distributed.LocalCluster`` with two worker processes, shared by the Dask tests and
closed after them (every wait bounded)."""

from __future__ import annotations

import pytest

pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

#: Seconds any single computation in these tests may take before the test fails.
TIMEOUT = 120


@pytest.fixture(scope="package")
def client():
    """Two worker processes (spawned, one thread each, one torch thread each)."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, death_timeout=60,
    )
    client = distributed.Client(cluster, timeout=60)
    try:
        client.wait_for_workers(2, timeout=TIMEOUT)
        yield client
    finally:
        client.close(timeout=30)
        cluster.close(timeout=30)
