"""Time tree ensembles: scikit-learn vs onnxruntime vs bridge's strategies, same data and graph.

Run from the repository root::

    python benchmarks/trees.py            # writes benchmarks/results/trees-<host>.{json,md}
    python benchmarks/trees.py --quick    # smaller forests, for a smoke run

    python benchmarks/trees.py --matrix   # the cost model's calibration forests

Cases: RandomForest (100 trees, depth 8), GradientBoosting (100, depth 3),
HistGradientBoosting (100 iterations) and one deep tree (depth 20), all regressors on
float32 data; batches of 1, 100, 10k and 100k rows. For each it reports the fastest of
repeated calls (backends interleaved round by round, so a noisy machine slows them alike),
checks that every backend agrees with scikit-learn, and checks the targets of docs/trees.md
('auto' fastest or within 20% of the fastest strategy; at >= 10k rows no slower than
onnxruntime; on the deep tree at least 2x faster than GEMM). At >= 10k rows it also times
'auto' under ``torch.compile(fullgraph=True)`` (compiled once per batch size; the compile
seconds are reported; ``--no-compile`` skips it). ``--matrix`` times eight more
forest shapes (depth 3 to 14, 20 to 100 features, 100 to 300 trees) at 100 to 10k rows: the
forests the CPU cost model of bridge/trees/select.py was fitted on.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bridge  # noqa: E402
import bridge.trees.module as tree_module  # noqa: E402
from bridge.errors import ConversionError  # noqa: E402
from bridge.sklearn.converters.hist_gradient_boosting import register  # noqa: E402
from bridge.trees import fused as tree_fused  # noqa: E402
from bridge.trees import kernel as tree_kernel  # noqa: E402
from bridge.trees import native as tree_native  # noqa: E402
from bridge.trees.select import ForestShape, auto_candidates, choose_strategy  # noqa: E402

BATCHES = (1, 100, 10_000, 100_000)
STRATEGIES = ("gemm", "traversal", "perfect", "lookup", "bitvector", "auto")
SKIP_ABOVE_SECONDS = 10.0  # do not start a run predicted to take longer than this
WARM_UP_ROUNDS = 3
COMPILE_FROM_BATCH = 10_000  # torch.compile'd 'auto' is timed at these batches too
# --ort-all-cores: a second onnxruntime session with its default thread count (every core)
ORT_ALL_CORES = "onnxruntime-all-cores"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import onnxruntime
    import skl2onnx
    import sklearn

    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "scikit-learn": sklearn.__version__,
        "onnxruntime": onnxruntime.__version__, "skl2onnx": skl2onnx.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def cases(quick: bool):
    from sklearn.ensemble import (
        GradientBoostingRegressor,
        HistGradientBoostingRegressor,
        RandomForestRegressor,
    )
    from sklearn.tree import DecisionTreeRegressor

    scale = 10 if quick else 1
    return {
        "random_forest_100x8": RandomForestRegressor(
            n_estimators=100 // scale, max_depth=8, max_features=0.5, n_jobs=-1, random_state=0),
        "gradient_boosting_100x3": GradientBoostingRegressor(
            n_estimators=100 // scale, max_depth=3, random_state=0),
        "hist_gradient_boosting_100": HistGradientBoostingRegressor(
            max_iter=100 // scale, random_state=0, early_stopping=False),
        "deep_tree_20": DecisionTreeRegressor(max_depth=20, min_samples_leaf=1, random_state=0),
    }


def timed_together(functions: dict, budget: float = 0.5, rounds: int = 100) -> dict:
    """Fastest seconds per call of each function, calling them in turn, round by round.

    Three warm-up rounds first: the first calls at a new batch size pay for fresh memory
    (page faults until the allocator keeps such blocks), which measured up to 1.6x slower
    than the steady state.

    At least 5 rounds, more while the rounds fit in ``budget`` per function; the order is
    shuffled every round (seeded), so no function always follows the same neighbour (one
    that evicts caches or makes the allocator return memory). The minimum, not the median:
    on shared machines other processes preempt thread pools, and the minimum is the estimate
    least distorted by that; interleaving spreads slow spells over every backend.
    """
    for _ in range(WARM_UP_ROUNDS):
        for function in functions.values():
            function()
    best = {key: float("inf") for key in functions}
    order = list(functions)
    shuffle = random.Random(0).shuffle
    spent = 0.0
    for done in range(rounds):
        if done >= 5 and spent > budget * len(functions):
            break
        shuffle(order)
        for key in order:
            t0 = time.perf_counter()
            functions[key]()
            elapsed = time.perf_counter() - t0
            best[key] = min(best[key], elapsed)
            spent += elapsed
    return best


def synthetic_target(x: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """The regression target every forest here is fitted to (non-linear in x0..x3, noisy)."""
    return (x[:, 0] * 2 + np.sin(3 * x[:, 1]) + x[:, 2] * x[:, 3]
            + 0.1 * rng.randn(len(x))).astype(np.float32)


def onnx_and_session(model, x_sample: np.ndarray, options):
    """The fitted ``model``'s ONNX graph (skl2onnx) and an onnxruntime CPU session on it."""
    import onnxruntime
    from skl2onnx import to_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_model = to_onnx(model, x_sample, target_opset={"": 17, "ai.onnx.ml": 3})
    session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    return onnx_model, session


def build_strategies(onnx_model, strategies=STRATEGIES) -> tuple[dict, dict]:
    """``from_onnx`` modules per strategy, and the strategies that cannot run this forest."""
    # forced GEMM on a deep tree exceeds the table limit that "auto" respects; lift it so
    # that the comparison the targets ask for can be made
    limit = tree_module.GEMM_LIMIT
    tree_module.GEMM_LIMIT = 2**29
    modules, unavailable = {}, {}
    try:
        for strategy in strategies:
            try:
                modules[strategy] = bridge.from_onnx(onnx_model, tree_strategy=strategy)
            except ConversionError as error:  # bit-vectors: > 64 leaves
                unavailable[strategy] = str(error)
    finally:
        tree_module.GEMM_LIMIT = limit
    return modules, unavailable


def trees_of(module) -> tree_module.TreeEnsembleModule:
    """The tree ensemble inside a module imported from a one-node graph."""
    return next(m for m in module.modules() if isinstance(m, tree_module.TreeEnsembleModule))


def compiled_runner(module, x: torch.Tensor):
    """``torch.compile`` of ``module`` for this batch (whole graph, static shapes): the
    function to time and the seconds the first call (the compilation) took; ``(None,
    reason)`` where compiling fails (inductor needs a C++ compiler). On CUDA the mode is
    "reduce-overhead" (the compiled kernels replayed as one CUDA graph)."""
    cuda = x.device.type == "cuda"
    mode = "reduce-overhead" if cuda else None

    def call():
        with torch.no_grad():
            out = compiled(x)
        if cuda:
            torch.cuda.synchronize()
        return out

    try:
        compiled = torch.compile(module, fullgraph=True, dynamic=False, mode=mode)
        t0 = time.perf_counter()
        call()
        seconds = time.perf_counter() - t0
    except Exception as error:  # noqa: BLE001 - reported in the results, not fatal
        return None, f"torch.compile failed: {type(error).__name__}: {error}"[:300]
    return call, seconds


def synchronized(module, x: torch.Tensor):
    """A call of ``module`` on ``x`` without autograd that returns once the GPU is done."""

    def call():
        with torch.no_grad():
            out = module(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        return out

    return call


def fused_walk_available(device: str) -> bool:
    """Whether 'traversal' runs as one fused walk on ``device`` (Triton on CUDA, C on CPU)."""
    return tree_kernel.available() if device == "cuda" else tree_native.available()


def without_kernel(function):
    """``function`` run with the fused walks switched off (``BRIDGE_TREE_KERNEL=0``)."""

    def call():
        with tree_fused.switched_off():
            return function()

    return call


def cuda_graph_runner(module, x: torch.Tensor):
    """'auto' captured once as a CUDA graph for this batch and replayed (no compiler: what
    a CUDA graph alone saves in kernel launches). The function raises on first call where
    the capture fails (a step that synchronizes with the host)."""
    graph, outputs = None, None

    def call():
        nonlocal graph, outputs
        if graph is None:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.no_grad():
                for _ in range(3):  # warm-up off the default stream, as capture requires
                    module(x)
            torch.cuda.current_stream().wait_stream(stream)
            captured = torch.cuda.CUDAGraph()
            with torch.no_grad(), torch.cuda.graph(captured):
                outputs = module(x)
            graph = captured
        graph.replay()
        torch.cuda.synchronize()
        return outputs

    return call


def run(quick: bool, threads: int, on_case=None, only=(), results=None,
        compile_cpu: bool = True, devices: tuple[str, ...] = ("cpu",),
        ort_all_cores: bool = False) -> dict:
    import onnxruntime

    register()
    torch.set_num_threads(threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    rng = np.random.RandomState(0)
    n_train, n_features = (5_000, 20) if quick else (20_000, 20)
    x_train = rng.randn(n_train, n_features).astype(np.float32)
    y_train = synthetic_target(x_train, rng)
    x_all = rng.randn(max(BATCHES), n_features).astype(np.float32)
    results = results or {"machine": dict(machine(), threads=threads), "cases": {}}
    for name, model in cases(quick).items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        model.fit(x_train, y_train)
        fit_seconds = time.perf_counter() - t0
        onnx_model, session = onnx_and_session(model, x_train[:1], options)
        all_cores = onnx_and_session(model, x_train[:1], None)[1] if ort_all_cores else None
        modules, unavailable = build_strategies(onnx_model)
        on_device = {device: modules if device == "cpu" else
                     {s: copy.deepcopy(m).to(device) for s, m in modules.items()}
                     for device in devices}
        trees = trees_of(modules["auto"])
        info = {"fit_seconds": round(fit_seconds, 2), "trees": trees.n_trees,
                "depth": trees.depth, "timings": {}, "max_abs_error": {}, "auto_choice": {},
                "unavailable": unavailable, "compile_seconds": {},
                "shape": dataclasses.asdict(trees.shape)}
        print(f"\n{name}: {trees.n_trees} trees, depth {trees.depth}", flush=True)
        previous: dict[str, tuple[float, int]] = {}
        for batch in BATCHES:
            x = x_all[:batch]
            reference = model.predict(x)
            row = {}
            runners = {
                "sklearn": lambda x=x, model=model: model.predict(x),
                "onnxruntime": lambda x=x, session=session: session.run(None, {"X": x}),
            }
            if all_cores is not None:
                runners[ORT_ALL_CORES] = lambda x=x, s=all_cores: s.run(None, {"X": x})
            for device in devices:
                xt = torch.from_numpy(x).to(device)
                for strategy, module in on_device[device].items():
                    runners[f"torch-{device}-{strategy}"] = synchronized(module, xt)
            for device in devices if compile_cpu and batch >= COMPILE_FROM_BATCH else ():
                function, seconds = compiled_runner(on_device[device]["auto"],
                                                    torch.from_numpy(x).to(device))
                if function is None:
                    info["unavailable"][f"{device}-compiled"] = seconds
                else:
                    runners[f"torch-{device}-compiled"] = function
                    info["compile_seconds"][f"{device}-{batch}"] = round(seconds, 1)

            for device in devices:  # the walk as torch operations
                if fused_walk_available(device):
                    runners[f"torch-{device}-traversal-ops"] = without_kernel(
                        runners[f"torch-{device}-traversal"])
            if "cuda" in devices and batch >= COMPILE_FROM_BATCH:
                runners["torch-cuda-graph"] = cuda_graph_runner(
                    on_device["cuda"]["auto"], torch.from_numpy(x).to("cuda"))
            measured = {}
            for key, function in runners.items():
                last = previous.get(key)
                if last is not None and last[0] * batch / last[1] > SKIP_ABOVE_SECONDS:
                    row[key] = None  # predicted too slow: skipped, reported as such
                    continue
                if key.startswith("torch-"):
                    try:
                        out = function().cpu().numpy().reshape(-1)
                    except Exception as error:  # noqa: BLE001 - one failing runner is reported
                        info["unavailable"][f"{key}-{batch}"] = f"{type(error).__name__}: {error}"
                        row[key] = None
                        continue
                    error = float(np.abs(out - reference).max())
                    info["max_abs_error"][key] = max(info["max_abs_error"].get(key, 0.0), error)
                    if key.endswith("-auto"):
                        device = key.split("-")[1]
                        info["auto_choice"][f"{device}-{batch}"] = trees_of(
                            on_device[device]["auto"]).last_strategy
                measured[key] = function
            row.update(timed_together(measured))
            row = {key: row[key] for key in runners}  # keep the column order
            for key in measured:
                previous[key] = (row[key], batch)
            info["timings"][str(batch)] = row
            shown = "  ".join(f"{k}={v * 1e3:.2f}ms" if v is not None else f"{k}=skipped"
                              for k, v in row.items())
            print(f"  batch {batch}: {shown}", flush=True)
        results["cases"][name] = info
        if on_case is not None:
            on_case(results)
    results["checks"] = checks(results)
    return results


def checks(results: dict) -> list[dict]:
    """The targets of docs/trees.md, evaluated on each device's timings: auto's pick within
    20% of the fastest strategy; at >= 10k rows no slower than onnxruntime (CPU) or at least
    10x faster than it (CUDA; against every onnxruntime column timed); on the deep tree at
    least 2x faster than GEMM."""
    found = []
    for name, info in results["cases"].items():
        for batch, row in info["timings"].items():
            for device in ("cpu", "cuda"):
                if row.get(f"torch-{device}-auto") is not None:
                    found += device_checks(name, info, int(batch), row, device)
    return found


def device_checks(name: str, info: dict, batch: int, row: dict, device: str) -> list[dict]:
    """:func:`checks` for one case, batch and device."""
    found = []

    def check(text: str, ratio: float, passed: bool) -> None:
        found.append({"case": name, "batch": batch, "device": device, "check": text,
                      "ratio": round(ratio, 3), "passed": bool(passed)})

    strategies = {s: row[f"torch-{device}-{s}"] for s in STRATEGIES if s != "auto"
                  and row.get(f"torch-{device}-{s}") is not None}
    best = min(strategies.values())
    auto = row[f"torch-{device}-auto"]
    # the rule's pick, timed as its forced strategy: 'auto' runs the same code, and
    # comparing two timings of one code path would only measure the machine's noise
    chosen = info["auto_choice"].get(f"{device}-{batch}")
    picked = strategies.get(chosen, auto)
    check(f"auto's pick ({chosen}) within 20% of best", picked / best, picked <= 1.2 * best)
    if batch >= 10_000:
        for reference in ("onnxruntime", ORT_ALL_CORES):
            if row.get(reference) is None:
                continue
            ratio = auto / row[reference]
            if device == "cpu":
                check(f"auto no slower than {reference}", ratio, ratio <= 1.0)
            else:
                check(f"auto >= 10x faster than {reference} (CPU)", 1 / ratio, ratio <= 0.1)
    if name.startswith("deep_tree") and row.get(f"torch-{device}-gemm") is not None:
        ratio = row[f"torch-{device}-gemm"] / auto
        check("auto >= 2x faster than gemm", ratio, ratio >= 2.0)
    walk_ops = row.get(f"torch-{device}-traversal-ops")
    if walk_ops is not None and "traversal" in strategies:
        pick, ratio = pick_without_fused_walk(info, batch, device,
                                              dict(strategies, traversal=walk_ops))
        check(f"without the fused walk, the rule's pick ({pick}) within 20% of best", ratio,
              ratio <= 1.2)
    return found


def pick_without_fused_walk(info: dict, batch: int, device: str,
                            times: dict[str, float]) -> tuple[str, float]:
    """The strategy the rule picks for a call that cannot run the fused walk (a traced or
    compiled call, no C compiler or Triton), and its time over the fastest of ``times``
    (forced strategies, 'traversal' timed as torch operations)."""
    recorded = info["shape"]  # (results recorded before session 6 ended hold padding_ratio too)
    shape = ForestShape(**{f.name: recorded[f.name] for f in dataclasses.fields(ForestShape)
                           if f.name in recorded})
    built = auto_candidates(shape, bitvector_possible="bitvector" in times)
    pick = choose_strategy(shape, batch=batch, device_type=device,
                           available=tuple(s for s in built if s in times), fused_walk=False)
    return pick, times[pick] / min(times.values())


def markdown(results: dict) -> str:
    lines = ["# Tree ensemble timings", "", "Machine: " + ", ".join(
        f"{k}={v}" for k, v in results["machine"].items()), "",
        "Fastest of repeated calls, milliseconds; ratios are time / onnxruntime time. "
        "'skipped' = predicted above 10 s.", ""]
    for name, info in results["cases"].items():
        lines += [f"## {name} ({info['trees']} trees, depth {info['depth']})", ""]
        keys = list(dict.fromkeys(k for row in info["timings"].values() for k in row))
        lines.append("| backend | " + " | ".join(f"{b} rows" for b in info["timings"]) + " |")
        lines.append("|---|" + "---|" * len(info["timings"]))
        for key in keys:
            cells = []
            for row in info["timings"].values():
                value, ort = row.get(key), row["onnxruntime"]
                cells.append("—" if key not in row else "skipped" if value is None else
                             f"{value * 1e3:.3g} ({value / ort:.2f}x)")
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        choices = ", ".join(f"{k}: {v}" for k, v in info["auto_choice"].items())
        lines += ["", f"auto chose: {choices}", ""]
        if info.get("compile_seconds"):
            spent = ", ".join(f"{b.replace('-', ', ')} rows {t} s" if "-" in b else
                              f"cpu, {b} rows {t} s" for b, t in info["compile_seconds"].items())
            lines += ["torch-*-compiled: `torch.compile(auto, fullgraph=True)` (on CUDA with "
                      f"mode='reduce-overhead'), compiled per batch size ({spent})", ""]
        for strategy, reason in info.get("unavailable", {}).items():
            lines += [f"{strategy}: not applicable ({reason})", ""]
    lines += ["## Checks", "", "| case | batch | device | check | ratio | passed |",
              "|---|---|---|---|---|---|"]
    for check in results["checks"]:
        lines.append(f"| {check['case']} | {check['batch']} | {check.get('device', 'cpu')} | "
                     f"{check['check']} | {check['ratio']} | "
                     f"{'yes' if check['passed'] else 'NO'} |")
    return "\n".join(lines) + "\n"


MATRIX_BATCHES = (100, 1_000, 10_000)
MATRIX_STRATEGIES = ("traversal", "lookup", "bitvector", "auto")
CUDA_MATRIX_BATCHES = (100, 1_000, 10_000, 100_000)


def matrix_cases() -> dict:
    """Forest shapes beyond the issue's four: (estimator, features)."""
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingRegressor,
        HistGradientBoostingRegressor,
        RandomForestRegressor,
    )

    def hgb(**kw):
        return HistGradientBoostingRegressor(random_state=0, early_stopping=False, **kw)

    return {
        "gb_depth3_20f": (GradientBoostingRegressor(n_estimators=100, max_depth=3,
                                                    random_state=0), 20),
        "gb_depth5_20f": (GradientBoostingRegressor(n_estimators=100, max_depth=5,
                                                    random_state=0), 20),
        "gb_depth3_100f": (GradientBoostingRegressor(n_estimators=100, max_depth=3,
                                                     max_features=0.3, random_state=0), 100),
        "hgb_31leaves_20f": (hgb(max_iter=100), 20),
        "hgb_31leaves_100f": (hgb(max_iter=100), 100),
        "hgb_15leaves_300trees_20f": (hgb(max_iter=300, max_leaf_nodes=15), 20),
        "rf_depth6_20f": (RandomForestRegressor(n_estimators=100, max_depth=6, n_jobs=-1,
                                                random_state=0), 20),
        "et_depth5_200trees_50f": (ExtraTreesRegressor(n_estimators=200, max_depth=5, n_jobs=-1,
                                                       random_state=0), 50),
    }


def run_matrix(threads: int, devices: tuple[str, ...] = ("cpu",), on_case=None) -> dict:
    """Time lookup, bit-vectors, the walk and 'auto' on :func:`matrix_cases` (on CPU; on
    CUDA every strategy, GEMM and perfect trees included, up to 100k rows)."""
    import onnxruntime

    register()
    torch.set_num_threads(threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    results = {"machine": dict(machine(), threads=threads), "cases": {}}
    for name, (model, n_features) in matrix_cases().items():
        rng = np.random.RandomState(0)
        x = rng.randn(20_000, n_features).astype(np.float32)
        model.fit(x, synthetic_target(x, rng))
        onnx_model, session = onnx_and_session(model, x[:1], options)
        info = {"rows": {}}
        x_test = rng.randn(max(CUDA_MATRIX_BATCHES), n_features).astype(np.float32)
        for device in devices:
            cuda = device == "cuda"
            modules, _ = build_strategies(onnx_model, STRATEGIES if cuda else MATRIX_STRATEGIES)
            modules = {k: m.to(device) for k, m in modules.items()}
            trees = trees_of(modules["auto"])
            info.update(trees=trees.n_trees, depth=trees.depth,
                        shape=dataclasses.asdict(trees.shape))
            for batch in CUDA_MATRIX_BATCHES if cuda else MATRIX_BATCHES:
                xb = x_test[:batch]
                xt = torch.from_numpy(xb).to(device)
                expected = model.predict(xb)
                runners = {"onnxruntime": lambda xb=xb, s=session: s.run(None, {"X": xb})}
                for strategy, module in list(modules.items()):
                    try:
                        with torch.no_grad():
                            out = module(xt).cpu().numpy().reshape(-1)
                        error = np.abs(out - expected).max()
                        if error > 1e-3:
                            raise RuntimeError(f"disagrees with scikit-learn by {error:.3g}")
                    except Exception as problem:  # noqa: BLE001 - reported, the rest goes on
                        info.setdefault("failed", {})[f"{device}-{strategy}-{batch}"] = (
                            f"{type(problem).__name__}: {problem}"[:300])
                        print(f"{name} {device} {batch}: {strategy} FAILED: {problem}",
                              flush=True)
                        del modules[strategy]
                        continue
                    runners[strategy] = synchronized(module, xt)
                if "traversal" in runners and fused_walk_available(device):
                    runners["traversal-ops"] = without_kernel(runners["traversal"])
                with torch.no_grad():
                    best = timed_together(runners)
                    chose = "failed"
                    if "auto" in modules:
                        modules["auto"](xt)
                        chose = trees.last_strategy
                key = str(batch) if device == "cpu" else f"{device}-{batch}"
                info["rows"][key] = {"ms": {k: v * 1e3 for k, v in best.items()},
                                     "auto_chose": chose}
                print(f"{name} {device} {batch}: " + "  ".join(
                    f"{k}={v * 1e3:.3f}ms" for k, v in best.items())
                    + f"  auto chose {chose}", flush=True)
        results["cases"][name] = info
        if on_case is not None:
            on_case(results)
    return results


def matrix_markdown(results: dict) -> str:
    lines = ["# Tree strategies on more forest shapes (cost-model calibration)", "",
             "Machine: " + ", ".join(f"{k}={v}" for k, v in results["machine"].items()), "",
             "Fastest of interleaved calls, milliseconds (ns per row and tree in brackets); "
             "'auto ok' = the strategy auto picked is within 20% of the fastest one.", ""]
    for device in ("cpu", "cuda"):
        rows = [(name, info, key, row) for name, info in results["cases"].items()
                for key, row in info["rows"].items()
                if (key.split("-")[0] if "-" in key else "cpu") == device]
        if rows:
            lines += matrix_table(device, rows)
    return "\n".join(lines)


def matrix_table(device: str, rows: list) -> list[str]:
    """One device's rows of :func:`matrix_markdown`."""
    strategies = MATRIX_STRATEGIES[:-1] if device == "cpu" else STRATEGIES[:-1]
    # also the walk as torch operations (the fused walk switched off), where it was timed
    ops = any("traversal-ops" in row["ms"] for _, _, _, row in rows)
    shown = strategies + (("traversal-ops",) if ops else ())
    lines = [f"## {device}", "", "| forest | rows | onnxruntime | " + " | ".join(shown)
             + " | auto (chose) | auto ok |" + (" without the fused walk: pick, ok |" if ops else ""),
             "|---|---|" + "---|" * (len(shown) + 3 + ops)]
    passed = passed_ops = 0
    for name, info, key, row in rows:
        batch = key.split("-")[-1]
        ms = row["ms"]
        walks = int(batch) * info["trees"] / 1e6  # ms -> ns per (row, tree)

        def cell(key, ms=ms, walks=walks):
            return (f"{ms[key]:.3g} ({ms[key] / walks:.1f})" if key in ms else "n/a")

        best = min(v for k, v in ms.items() if k in strategies)
        ok = ms.get(row["auto_chose"], ms.get("auto", float("inf"))) <= 1.2 * best  # checks()
        passed += ok
        line = (f"| {name} ({info['trees']} trees, depth {info['depth']}) | {batch} | "
                + " | ".join(cell(k) for k in ("onnxruntime",) + shown)
                + f" | {cell('auto')} ({row['auto_chose']}) | {'yes' if ok else 'NO'} |")
        if ops and "traversal-ops" in ms:
            times = {k: ms[k] for k in strategies if k in ms}
            pick, ratio = pick_without_fused_walk(info, int(batch), device,
                                                  dict(times, traversal=ms["traversal-ops"]))
            passed_ops += ratio <= 1.2
            line += f" {pick}, {'yes' if ratio <= 1.2 else 'NO'} ({ratio:.2f}) |"
        lines.append(line)
    summary = [f"auto's pick within 20% of the fastest strategy in {passed} of {len(rows)} rows."]
    if ops:
        summary.append(f"Without the fused walk (the walk timed as torch operations), the "
                       f"rule's pick is within 20% of the fastest in {passed_ops} of {len(rows)} rows.")
    return lines + [""] + summary + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small forests (smoke run)")
    parser.add_argument("--matrix", action="store_true",
                        help="time the cost model's calibration forests instead")
    parser.add_argument("--output", default=None, help="result file stem")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for torch and onnxruntime alike (default 1: shared CI "
                             "machines preempt thread pools, which distorts both)")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip timing torch.compile'd 'auto' at >= 10k rows")
    parser.add_argument("--devices", default=None,
                        help="comma-separated torch devices to time (cpu, cuda; default: cpu, "
                             "and cuda when present)")
    parser.add_argument("--ort-all-cores", action="store_true",
                        help="also time onnxruntime with its default thread count (every core)")
    parser.add_argument("--cases", nargs="*", default=(),
                        help="run only these cases, merging into an existing result file")
    args = parser.parse_args(argv)
    if args.output and Path(args.output).name != args.output:
        parser.error(f"--output is a file name stem under benchmarks/results (e.g. trees-vm); "
                     f"got the path {args.output!r}")
    unknown = sorted(set(args.cases) - set(cases(args.quick)))
    if unknown:  # checked before the run, which would otherwise time nothing
        parser.error(f"unknown case(s) {unknown}; valid: {', '.join(cases(args.quick))}")
    available = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    devices = tuple(args.devices.split(",")) if args.devices else available
    if not devices or set(devices) - set(available):
        parser.error(f"--devices {args.devices!r}: expected a comma-separated list of "
                     f"{', '.join(available)} (the devices present here)")
    host = platform.node().split(".")[0].lower().replace(" ", "-")
    directory = Path(__file__).resolve().parent / "results"
    directory.mkdir(parents=True, exist_ok=True)
    if args.matrix:
        stem = args.output or f"trees-matrix-{host}"

        def save_matrix(results: dict) -> None:  # after every forest, as for the main run
            (directory / f"{stem}.json").write_text(json.dumps(results, indent=1))
            (directory / f"{stem}.md").write_text(matrix_markdown(results))

        save_matrix(run_matrix(args.threads, devices, on_case=save_matrix))
        print(f"\nwrote {directory / stem}.json/.md")
        return 0
    stem = args.output or ("trees-quick" if args.quick else f"trees-{host}")

    def save(results: dict) -> None:  # after every case, so a long run leaves its results
        results["checks"] = checks(results)
        (directory / f"{stem}.json").write_text(json.dumps(results, indent=1))
        (directory / f"{stem}.md").write_text(markdown(results))

    existing = directory / f"{stem}.json"
    previous = json.loads(existing.read_text()) if args.cases and existing.exists() else None
    results = run(args.quick, args.threads, on_case=save, only=tuple(args.cases),
                  results=previous, compile_cpu=not args.no_compile, devices=devices,
                  ort_all_cores=args.ort_all_cores)
    save(results)
    failed = [c for c in results["checks"] if not c["passed"]]
    print(f"\nwrote {directory / stem}.json/.md; {len(failed)} check(s) not met")
    for check in failed:
        print(f"  NOT MET: {check}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
