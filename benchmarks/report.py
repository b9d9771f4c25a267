"""Time to write the full report of a 1,000-trial sweep, and where that time goes.

A synthetic sweep (benchmarks/synthetic.py: lr 10 levels x width 5 x 20 seeds =
1,000 trials, 100 steps each = 100,000 step rows, written with SweepStore as the
run's writer writes it; directions declared for val_loss and accuracy, so the
report ranks groups) is reported on with analysis.write_report. Each
repeat times, back to back, in alternating order:
  total     analysis.write_report(folder, out=...)  (load, analyse, figures, files)
  load      analysis.load(folder)
  analyse   analysis.analyse(sweep, sweep.settings()) on a loaded sweep
and `write` = total - load - analyse (sections, figures, markdown, HTML, CSV).

    python benchmarks/report.py                        # 1,000 trials x 100 steps
    python benchmarks/report.py --trials 200 --steps 50 --repeats 1

Medians over --repeats are reported with each part's share of the total; the
report's figure count and size are printed. Times are only reported.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import script_parser
from synthetic import DIRECTIONS, build_sweep

from analysis import analyse, load, write_report


def timed(run: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--trials", type=int, default=1000, help="a multiple of 50")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder = build_sweep(tmp, args.trials, args.steps, report={"directions": DIRECTIONS})
        print(f"built {folder} in {time.perf_counter() - start:.1f}s")
        out = Path(tmp) / "report"
        sweep = load(folder)  # for the analyse step, loaded once

        def total() -> None:
            shutil.rmtree(out, ignore_errors=True)
            write_report(folder, out=out)

        runs: dict[str, Callable[[], object]] = {
            "total": total,
            "load": lambda: load(folder),
            "analyse": lambda: analyse(sweep, sweep.settings()),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for repeat in range(args.repeats):
            # Alternating order: drift on a noisy machine hits every part alike.
            order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
            for name in order:
                times[name].append(timed(runs[name]))

        analysis = analyse(sweep, sweep.settings())
        files = [p for p in out.iterdir() if p.is_file()]
        figures = [p for p in files if p.suffix == ".png"]
        html = (out / "report.html").stat().st_size
        size = sum(p.stat().st_size for p in files)
        rankings = ", ".join(analysis.rankings) or "none"
        rows, steps = len(sweep.ok), len(sweep.metrics)
        groups = len(analysis.groups)

    medians = {name: statistics.median(t) for name, t in times.items()}
    medians["write"] = medians["total"] - medians["load"] - medians["analyse"]
    print(
        f"\nreport of {rows} trials ({groups} groups), {steps:,} step rows, "
        f"median of {args.repeats}\n"
    )
    print(f"{'part':<9} {'median s':>9} {'min s':>8} {'share':>7}")
    for name in ("load", "analyse", "write", "total"):
        fastest = f"{min(times[name]):>8.3f}" if name in times else f"{'-':>8}"
        share = medians[name] / medians["total"]
        print(f"{name:<9} {medians[name]:>9.3f} {fastest} {share:>6.0%}")
    print("total runs: " + ", ".join(f"{t:.2f}s" for t in times["total"]))
    print(
        f"\n{len(figures)} figures; {len(files)} files, {size / 2**20:.1f} MiB in all, "
        f"report.html {html / 2**20:.1f} MiB (figures inside); rankings: {rankings}"
    )


if __name__ == "__main__":
    main()
