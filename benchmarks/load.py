"""Loading a sweep's per-step metrics (1,000,000 rows by default) into pandas.

A synthetic sweep (benchmarks/synthetic.py: 1,000 trials x 1,000 steps, written
with orchestrator.store.folder.SweepStore as a run's writer writes it, 100 files of
10,000 rows in metrics/) is read, side by side in one process, by:
  parquet      pandas.read_parquet(<sweep>/metrics), the bare read
  load         analysis.load(<sweep>): trials, metrics, pairs and sweep.json
  jsonl        the same rows from one result.json per trial (JSON lines, as Ray
               Tune's JsonLoggerCallback writes them), read the way a user would:
               json.loads per line into one list of dicts, one DataFrame, `time`
               parsed to UTC datetimes (json.loads and pd.read_json(lines=True)
               per file + pd.concat take the same time here; json.loads is kept)
  jsonl-arrow  the same files with pyarrow.json.read_json, the fastest JSON reader
               at hand, so that the JSON baseline is not a straw man
Real result.json lines carry about 15 more keys (Tune's own), so the JSON
times here are a lower bound.

    python benchmarks/load.py                          # 1,000 trials x 1,000 steps
    python benchmarks/load.py --trials 500 --steps 200 --repeats 3
    python benchmarks/load.py --dir /tmp/bench-load    # keep the folder (reused if there)

After one untimed round, each JSON reader runs --repeats times and each Parquet
reader --repeats x --inner times (a tenth of a second each, so more samples), as
back-to-back load/parquet pairs; the order is reversed every other repeat and
every other pair. The median and fastest run are reported with the ratio to the
bare Parquet read, and the median of the pairs' ratios.
The files were just written, so they are read from the page cache. Target:
load within 1.5x of the bare Parquet read. Every reader must return the same
number of rows (checked); times are only reported.
"""

from __future__ import annotations

import gc
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.json as pajson
from common import script_parser
from synthetic import NAME, build_sweep

from analysis import load


def read_parquet(folder: Path) -> int:
    return len(pd.read_parquet(folder / "metrics"))


def read_load(folder: Path) -> int:
    sweep = load(folder)
    assert len(sweep.trials) > 0
    return len(sweep.metrics)


def jsonl_files(folder: Path) -> list[Path]:
    return sorted((folder.parent / f"{NAME}-json").glob("*/result.json"))


def read_jsonl(folder: Path) -> int:
    records = []
    for path in jsonl_files(folder):
        with open(path) as lines:
            records += [json.loads(line) for line in lines]
    frame = pd.DataFrame.from_records(records)
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    return len(frame)


def read_jsonl_arrow(folder: Path) -> int:
    table = pa.concat_tables(pajson.read_json(path) for path in jsonl_files(folder))
    frame = table.to_pandas()
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    return len(frame)


READERS: dict[str, Callable[[Path], int]] = {
    "parquet": read_parquet,
    "load": read_load,
    "jsonl": read_jsonl,
    "jsonl-arrow": read_jsonl_arrow,
}


def folder_for(storage: Path, trials: int, steps: int) -> Path:
    """The sweep under `storage`, built unless one of the right size is already there."""
    folder = storage / NAME
    if (folder / "sweep.json").is_file() and (storage / f"{NAME}-json").is_dir():
        if read_parquet(folder) == trials * steps:
            print(f"reusing {folder}")
            return folder
        raise SystemExit(f"{folder} holds another size of sweep; give an empty --dir")
    start = time.perf_counter()
    folder = build_sweep(storage, trials, steps, jsonl=True)
    print(f"built {folder} in {time.perf_counter() - start:.1f}s")
    return folder


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--trials", type=int, default=1000, help="a multiple of 50")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--inner", type=int, default=5, help="Parquet read pairs per repeat (default 5)"
    )
    parser.add_argument("--dir", type=Path, help="where the sweep goes (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        storage = args.dir or Path(tmp)
        storage.mkdir(parents=True, exist_ok=True)
        folder = folder_for(storage, args.trials, args.steps)
        parquet_bytes = sum(p.stat().st_size for p in (folder / "metrics").glob("*.parquet"))
        json_bytes = sum(p.stat().st_size for p in jsonl_files(folder))
        files = len(list((folder / "metrics").glob("*.parquet")))

        for name in READERS:  # untimed warm-up: imports, page cache, allocator
            READERS[name](folder)
        times: dict[str, list[float]] = {name: [] for name in READERS}
        rows: dict[str, set[int]] = {name: set() for name in READERS}
        pairs: list[float] = []  # load / parquet, back to back

        def timed(name: str) -> float:
            gc.collect()
            start = time.perf_counter()
            rows[name].add(READERS[name](folder))
            times[name].append(elapsed := time.perf_counter() - start)
            return elapsed

        def parquet_pairs(forward: bool) -> None:
            # The Parquet reads take a tenth of a second: --inner pairs per repeat.
            for i in range(args.inner):
                order = ["load", "parquet"] if (i % 2 == 0) == forward else ["parquet", "load"]
                took = {name: timed(name) for name in order}
                pairs.append(took["load"] / took["parquet"])

        for repeat in range(args.repeats):
            # Order reversed every other repeat: drift on a noisy machine hits all alike.
            forward = repeat % 2 == 0
            if not forward:
                parquet_pairs(forward)
            for name in ("jsonl", "jsonl-arrow") if forward else ("jsonl-arrow", "jsonl"):
                timed(name)
            if forward:
                parquet_pairs(forward)

    expected = args.trials * args.steps
    assert all(r == {expected} for r in rows.values()), rows

    print(
        f"\n{expected:,} step rows ({args.trials} trials x {args.steps} steps): "
        f"metrics/ {files} Parquet files, {parquet_bytes / 2**20:.1f} MiB; "
        f"JSON lines {json_bytes / 2**20:.1f} MiB; "
        f"{args.repeats} repeats (Parquet reads {args.inner} each)\n"
    )
    print(
        f"{'reader':<12} {'runs':>5} {'median s':>9} {'min s':>8} {'vs parquet':>11} {'min/min':>8}"
    )
    base, base_min = statistics.median(times["parquet"]), min(times["parquet"])
    for name, values in times.items():
        median, fastest = statistics.median(values), min(values)
        print(
            f"{name:<12} {len(values):>5} {median:>9.3f} {fastest:>8.3f} "
            f"{median / base:>10.2f}x {fastest / base_min:>7.2f}x"
        )
    quartiles = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else [pairs[0]] * 3
    print(
        f"load / parquet, {len(pairs)} back-to-back pairs: median {statistics.median(pairs):.2f}x, "
        f"quartiles {quartiles[0]:.2f}-{quartiles[2]:.2f}x (target: within 1.5x)"
    )


if __name__ == "__main__":
    main()
