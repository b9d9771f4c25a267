"""The store after a long sweep, before and after compaction: files per table, and how
long `sweep status` and `analysis.load` take on each.

A real sweep of N trivial trials (experiments.toy.trivial: 5 reported steps each) runs
through orchestrator.run_sweep on an embedded Ray with 2 CPUs, with end-of-run
compaction off (RAYSWEEP_COMPACT=0), so its tables hold the files the writer's flushes
wrote (one a second). Then, in this process, `sweep status`'s text (status_text) and
analysis.load are timed on that store, `compact` rewrites it, and both are timed again.

    python benchmarks/store_files.py                      # 10,000 trials
    python benchmarks/store_files.py --trials 500 --repeats 3
    python benchmarks/store_files.py --dir /tmp/store-files   # keep the sweep (reused if there)

The sweep is measured and compacted in a copy, so a kept one can be measured again.
Times are the median of --repeats reads after one untimed read (files in the page cache).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ray
from common import script_parser, start_local_ray

from analysis import load
from orchestrator import run_sweep
from orchestrator.store.compaction import SWITCH, compact
from orchestrator.store.folder import TABLES, SweepStore
from orchestrator.summary import status_text

NAME = "store-files"


def run_trivial_sweep(storage: Path, trials: int) -> float:
    """Seconds the sweep took; tables left as the writer wrote them."""
    os.environ[SWITCH] = "0"
    start_local_ray()
    spec = {
        "name": NAME,
        "experiment": "trivial",
        "grid": {"x": list(range(trials))},
        "storage": str(storage),
    }
    start = time.perf_counter()
    result = run_sweep(spec, progress=None)
    elapsed = time.perf_counter() - start
    ray.shutdown()
    assert result.count("ok") == trials, result.rows[:1]
    return elapsed


def median_seconds(read: Callable[[], object], repeats: int) -> float:
    read()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(store: SweepStore, repeats: int) -> dict[str, float]:
    """Files and megabytes per table; median seconds of status_text and analysis.load."""
    fresh = lambda: SweepStore(str(Path(store.path).parent), NAME)  # noqa: E731 (no cached schema)
    counts = {t: len(list(Path(store.table_dir(t)).glob("*.parquet"))) for t in TABLES}
    sizes = {t: sum(f.stat().st_size for f in Path(store.table_dir(t)).iterdir()) for t in TABLES}
    return {
        **{f"{t} files": counts[t] for t in TABLES},
        **{f"{t} MB": sizes[t] / 1e6 for t in TABLES},
        "status s": median_seconds(lambda: status_text(fresh()), repeats),
        "load s": median_seconds(lambda: load(store.path), repeats),
    }


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    storage = args.dir or Path(tempfile.mkdtemp(prefix="store-files-"))
    if not SweepStore(str(storage), NAME).exists():
        print(f"sweep of {args.trials} trials: {run_trivial_sweep(storage, args.trials):.0f} s")
    copy = Path(tempfile.mkdtemp(prefix="store-files-copy-"))  # the sweep itself stays as run
    shutil.copytree(storage / NAME, copy / NAME)
    store = SweepStore(str(copy), NAME)
    before = measure(store, args.repeats)
    start = time.perf_counter()
    compact(store)
    compaction_s = time.perf_counter() - start
    after = measure(store, args.repeats)

    print(
        f"\n{store.path}: {args.trials} trivial trials x 5 steps; compaction {compaction_s:.2f} s"
    )
    print(f"median of {args.repeats} reads\n")
    print(f"{'':<16} {'before':>10} {'after':>10}")
    for key in before:
        print(f"{key:<16} {_cell(before[key])} {_cell(after[key])}")


def _cell(value: float) -> str:
    return f"{value:>10}" if isinstance(value, int) else f"{value:>10.3f}"


if __name__ == "__main__":
    main()
