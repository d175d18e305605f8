"""Dask scoring against the in-memory call: rows/s with 1 and 2 worker processes, time to first
result, per-task overhead, and the job size where Dask starts to pay.

A converted SVC (or forest) scores rows already held by the workers (persisted), one thread
per worker and per torch; the in-memory call runs in this process on one thread.
Run: ``python benchmarks/scaleout.py [--model svc|forest] [--rows 200000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from distributed import (  # noqa: E402
    Client,
    LocalCluster,
    as_completed,
    futures_of,
    get_task_stream,
    wait,
)
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

import bridge  # noqa: E402

FEATURES = 20


def converted(kind: str):
    """The model: an RBF SVC on 3,000 rows (~1,000+ support vectors) or a 100-tree forest."""
    X, y = make_classification(3_000, FEATURES, n_informative=10, flip_y=0.1, random_state=0)
    estimator = SVC() if kind == "svc" else RandomForestClassifier(100, max_depth=10,
                                                                   random_state=0)
    return bridge.from_sklearn(estimator.fit(X, y))


def rows_array(n_rows: int, chunk: int):
    """Seeded float32 rows, generated on the workers."""
    source = da.random.RandomState(0).normal(size=(n_rows, FEATURES), chunks=(chunk, FEATURES))
    return source.astype(np.float32)


def best(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def cluster(workers: int) -> tuple[LocalCluster, Client]:
    made = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                        dashboard_address=None, env={"OMP_NUM_THREADS": "1"})
    return made, Client(made)


def dask_timing(client: Client, model, n_rows: int, chunk: int, repeats: int) -> dict:
    """Seconds to score ``n_rows`` persisted rows (best of ``repeats``, model already on the
    workers) and, first, the time to the first block and to all blocks on a cold model."""
    start = time.perf_counter()
    client.run(_import_bridge)
    imports = time.perf_counter() - start
    X = client.persist(rows_array(n_rows, chunk))
    wait(X)
    start = time.perf_counter()
    futures = futures_of(client.persist(model.predict(X)))
    first = None
    for _ in as_completed(futures):
        first = first or time.perf_counter() - start
    cold = time.perf_counter() - start
    client.cancel(futures)  # the warm runs below compute again
    del futures
    cpu_before = client.run(time.process_time)
    start = time.perf_counter()
    with get_task_stream(client) as stream:
        warm = best(lambda: client.compute(model.predict(X)).result(), repeats)
    wall = time.perf_counter() - start
    cpu_after = client.run(time.process_time)
    shares = sorted((cpu_after[w] - cpu_before[w]) / wall for w in cpu_after)
    cpu_seconds = sum(cpu_after[w] - cpu_before[w] for w in cpu_after)
    per_worker: dict[str, int] = {}
    for task in stream.data:
        if "_score_block" in str(task["key"]):
            per_worker[task["worker"]] = per_worker.get(task["worker"], 0) + 1
    return {"imports": imports, "first": first, "cold": cold, "warm": warm, "X": X,
            "per_worker": sorted(per_worker.values()), "shares": shares,
            "rows_per_cpu_second": repeats * n_rows / cpu_seconds}


def _import_bridge() -> None:
    """What a fresh worker pays once before its first task (torch, bridge's converters)."""
    import bridge.sklearn.model  # noqa: F401


def main(kind: str = "svc", n_rows: int = 200_000, repeats: int = 3) -> list[str]:
    torch.set_num_threads(1)
    model = converted(kind)
    lines = [f"# python benchmarks/scaleout.py --model {kind} --rows {n_rows} --repeats {repeats}",
             f"# machine: {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__},"
             f" dask {dask.__version__}; one thread per worker and per torch"]
    chunk = 10_000
    results, local = {}, {}
    for workers in (1, 2):
        made, client = cluster(workers)
        try:
            timing = dask_timing(client, model, n_rows, chunk, repeats)
            X_local = timing["X"].compute()
            start_cpu, start = time.process_time(), time.perf_counter()
            local[workers] = best(lambda: model.predict(X_local), repeats)  # noqa: B023
            share = (time.process_time() - start_cpu) / (time.perf_counter() - start)
            results[workers] = timing
            lines.append(f"in memory (this process)    {n_rows:>8,} rows  {local[workers]:7.3f} s  "
                         f"{n_rows / local[workers]:>10,.0f} rows/s  (it got {share:.0%} of a core)")
            lines.append(f"dask, {workers} worker process(es)  {n_rows:>8,} rows  "
                         f"{timing['warm']:7.3f} s  {n_rows / timing['warm']:>10,.0f} rows/s  "
                         f"({n_rows // chunk} tasks)")
            shares = ", ".join(f"{share:.0%}" for share in timing["shares"])
            lines.append(f"  block tasks per worker over the timed runs: {timing['per_worker']}; "
                         f"CPU each worker process got meanwhile: {shares} of a core; "
                         f"{timing['rows_per_cpu_second']:,.0f} rows per worker CPU-second")
            lines.append(f"  fresh workers import torch+bridge: {timing['imports']:.2f} s; then a "
                         f"model new to them: first block back after {timing['first']:.3f} s, "
                         f"all {timing['cold']:.3f} s")
            if workers == 2:
                lines += crossover(client, model, max(repeats, 5))
        finally:
            client.close()
            made.close()
    ratio = results[1]["warm"] / results[2]["warm"]
    lines.append(f"2 workers / 1 worker throughput: {ratio:.2f}x; 2 workers / in memory "
                 f"(measured beside them): {local[2] / results[2]['warm']:.2f}x")
    per_cpu = results[2]["rows_per_cpu_second"] / results[1]["rows_per_cpu_second"]
    lines.append(f"rows per worker CPU-second, 2 workers / 1 worker: {per_cpu:.2f} (1.00: splitting "
                 "the work costs no extra CPU, so with two free cores the throughput would double)")
    print("\n".join(lines))
    return lines


def crossover(client: Client, model, repeats: int) -> list[str]:
    """Small jobs on 2 workers against in memory (2 tasks each), and the per-task overhead."""
    lines = ["job size on 2 workers (2 tasks) against in memory:"]
    for n_rows in (1_000, 4_000, 12_000, 40_000):
        X = client.persist(rows_array(n_rows, n_rows // 2))
        X_local = X.compute()
        client.compute(model.predict(X)).result()  # the model is on the workers
        on_dask = best(lambda: client.compute(model.predict(X)).result(), repeats)  # noqa: B023
        local = best(lambda: model.predict(X_local), repeats)  # noqa: B023
        lines.append(f"  {n_rows:>7,} rows: in memory {local:.3f} s, dask {on_dask:.3f} s "
                     f"({local / on_dask:.2f}x)")
    n_rows, tasks = 2_000, 100
    many = client.persist(rows_array(n_rows, n_rows // tasks))
    one = client.persist(rows_array(n_rows, n_rows))
    client.compute(model.predict(many)).result()
    t_many = best(lambda: client.compute(model.predict(many)).result(), repeats)
    t_one = best(lambda: client.compute(model.predict(one)).result(), repeats)
    lines.append(f"per-task overhead: {n_rows:,} rows as {tasks} tasks {t_many:.3f} s, as 1 task "
                 f"{t_one:.3f} s: {(t_many - t_one) / (tasks - 1) * 1e3:.1f} ms per extra task "
                 "(2 workers)")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("svc", "forest"), default="svc")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    main(arguments.model, arguments.rows, arguments.repeats)
