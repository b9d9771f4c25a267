"""Per-trial overhead of `sweep` next to what a user would write instead.

The same N trivial trials (each reports 5 steps and returns its final metrics)
run, in one process on one Ray instance, through:
  sweep        orchestrator.run_sweep, Parquet results included
  tune-tuned   Ray Tune with reuse_actors=True and TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1
  tune-stock   Ray Tune with its defaults
  ray-tasks    plain Ray tasks
and the ledger alone (with its Parquet writer) is fed many trials' results at once
(rows/second).

    python benchmarks/overhead.py                  # N=200, stock Tune on 50 trials
    python benchmarks/overhead.py --trials 100 --stock-trials 100 --repeats 3

Timings are medians over --repeats, the sweep / tuned-Tune ratio also run by
run (they run back to back); stock Tune, the slowest by far, runs once.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from types import SimpleNamespace

import ray
from common import script_parser, start_local_ray
from ray import tune

from orchestrator import run_sweep
from orchestrator.faults.abort import Abort
from orchestrator.run.ledger import Ledger
from orchestrator.store.folder import SweepStore
from orchestrator.store.writer import TableWriter
from orchestrator.trials import TrialIndex
from orchestrator.worker.bundles import param_space
from orchestrator.worker.messages import Report, to_result

STEPS = 5


def trivial_tune(config: dict) -> dict:
    """experiments.toy.trivial written for Tune: an optional sleep, 5 steps, then its final
    metrics."""
    if config.get("sleep"):
        time.sleep(config["sleep"])
    for step in range(STEPS):
        tune.report({"step": step, "value": config["x"] * step})
    return {"final": config["x"] * STEPS}


@ray.remote
def trivial_task(x: int) -> float:
    return sum(x * step for step in range(STEPS))


@contextmanager
def env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def with_sweep(n: int, folder: str, sleep: float = 0.0) -> None:
    spec = {
        "name": "overhead",
        "experiment": "trivial",
        "grid": {"x": list(range(n))},
        "params": {"sleep": sleep},
        "storage": folder,
    }
    result = run_sweep(spec, progress=None)
    assert result.count("ok") == n, result.rows[:1]


def with_tune(n: int, folder: str, tuned: bool, sleep: float = 0.0) -> None:
    with env("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1" if tuned else "0"):
        tuner = tune.Tuner(
            trivial_tune,
            param_space={"x": tune.grid_search(list(range(n))), "sleep": sleep},
            tune_config=tune.TuneConfig(reuse_actors=tuned),
            run_config=tune.RunConfig(storage_path=folder, name="overhead", verbose=0),
        )
        grid = tuner.fit()
    assert grid.num_errors == 0 and len(grid) == n


def with_tasks(n: int, folder: str) -> None:
    assert len(ray.get([trivial_task.remote(i) for i in range(n)])) == n


def seconds(run: Callable[[int, str], None], n: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        run(n, folder)
        return time.perf_counter() - start


def ledger_rows_per_second(trials: int, steps: int) -> tuple[int, float]:
    """Feed the ledger `trials` interleaved trials' step results, as Tune would."""
    with tempfile.TemporaryDirectory() as folder:
        store = SweepStore(folder, "ledger")
        run_info = {"sweep": "ledger", "run_id": "bench", "git_commit": None, "git_dirty": None}
        index = TrialIndex("trivial", {f"t{i}": {"x": i, "seed": 0} for i in range(trials)})
        ledger = Ledger(index, TableWriter(store, Abort()), run_info, {})
        ((key, grid),) = param_space([[f"t{i}"] for i in range(trials)], labelled=False).items()
        configs = [{key: value} for value in grid["grid_search"]]
        fake = [  # Tune trials, each running a bundle of one (orchestrator/worker/bundles.py)
            SimpleNamespace(trial_id=f"t{i}", config=config) for i, config in enumerate(configs)
        ]
        start = time.perf_counter()
        for step in range(steps):
            now = time.time()
            for t in fake:
                metrics = {"step": step, "loss": 1.0 / (step + 1), "acc": 0.5}
                report = Report("step", t.trial_id, metrics, time=now)
                ledger.on_trial_result(0, fake, t, to_result(report, top=True))
        for t in fake:
            ledger.on_trial_result(0, fake, t, to_result(Report("final", t.trial_id), top=True))
            ledger.on_trial_complete(0, fake, t)
        ledger.writer.flush()
        elapsed = time.perf_counter() - start
        rows = len(store.read("metrics", ["step"]))
    assert rows == trials * steps
    return rows, rows / elapsed


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--stock-trials", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    start_local_ray()
    seconds(with_tasks, 10)  # start the workers once, for everyone
    seconds(lambda n, f: with_tune(n, f, tuned=True), 4)
    runs = {
        "sweep": with_sweep,
        "tune-tuned": lambda n, f: with_tune(n, f, tuned=True),
        "ray-tasks": with_tasks,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        # Back to back, in alternating order: drift on a noisy machine hits both alike.
        order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
        for name in order:
            times[name].append(seconds(runs[name], args.trials))
    stock = seconds(lambda n, f: with_tune(n, f, tuned=False), args.stock_trials)
    ray.shutdown()

    per_trial = {name: statistics.median(t) / args.trials for name, t in times.items()}
    per_trial["tune-stock"] = stock / args.stock_trials
    pair_ratios = [s / t for s, t in zip(times["sweep"], times["tune-tuned"], strict=True)]

    print(f"\n{args.trials} trivial trials x {STEPS} steps, 2 CPUs, median of {args.repeats}")
    print(f"(tune-stock: {args.stock_trials} trials, once)\n")
    print(f"{'runner':<12} {'s/trial':>9} {'ms/trial':>9} {'vs tune-tuned':>14}")
    base = per_trial["tune-tuned"]
    for name in ("ray-tasks", "tune-tuned", "sweep", "tune-stock"):
        t = per_trial[name]
        print(f"{name:<12} {t:>9.4f} {t * 1e3:>9.1f} {t / base:>13.2f}x")
    for name in ("sweep", "tune-tuned"):
        print(f"{name} runs: " + ", ".join(f"{t:.2f}s" for t in times[name]))
    print(
        f"sweep / tune-tuned, run by run: {', '.join(f'{r:.2f}' for r in pair_ratios)}; "
        f"median {statistics.median(pair_ratios):.2f}x, "
        f"fastest vs fastest {min(times['sweep']) / min(times['tune-tuned']):.2f}x"
    )

    rows, rate = ledger_rows_per_second(trials=200, steps=500)
    print(f"\nThe ledger alone: 200 trials reporting at once, {rows} step rows: {rate:,.0f} rows/s")


if __name__ == "__main__":
    main()
