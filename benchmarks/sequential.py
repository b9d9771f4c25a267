"""The stopping rule of seeds added until decided, in simulation (numpy and scipy, no Ray).

Simulates comparisons of levels whose values are normal with sd 1 and the given means
(effects, in sd), run as a sequential sweep runs them (`min` seeds per level, then `step`
more until decided or `max`), and prints, per scenario: how often a winner was declared,
how often it was the truly best level, and the mean seeds per level used. The first rows
have no effect: their declared share is the false-winner rate the rule promises to keep
under alpha. The last row is the same data looked at after every round with a plain test
at alpha, for contrast.

    python benchmarks/sequential.py [--sweeps 2000] [--min 3] [--max 30] [--step 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import script_parser

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo, run from anywhere

from analysis.sequential import Rule, looks, simulate  # noqa: E402

SCENARIOS = [  # (what, the levels' means in sd)
    ("2 levels, no effect", [0.0, 0.0]),
    ("3 levels, no effect", [0.0, 0.0, 0.0]),
    ("2 levels, 0.5 sd apart", [0.0, 0.5]),
    ("2 levels, 1 sd apart", [0.0, 1.0]),
    ("2 levels, 2 sd apart", [0.0, 2.0]),
    ("3 levels, best 1 sd ahead", [0.0, 1.0, 1.0]),
]


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--sweeps", type=int, default=2000, help="simulated comparisons")
    parser.add_argument("--min", type=int, default=3)
    parser.add_argument("--max", type=int, default=30)
    parser.add_argument("--step", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    planned = looks(args.min, args.max, args.step)
    rule = Rule("metric", "level", "min", args.alpha, planned)
    print(f"min {args.min}, max {args.max}, step {args.step}: up to {planned} looks; "
          f"alpha {args.alpha}; {args.sweeps} simulated comparisons per row")  # fmt: skip
    print("| scenario | declared a winner | declared the best | mean seeds per level |")
    print("|---|---:|---:|---:|")
    naive = Rule("metric", "level", "min", args.alpha, 1)
    rows = [(what, rule, effects) for what, effects in SCENARIOS]
    rows.append(("2 levels, no effect, plain test at every look", naive, [0.0, 0.0]))
    for n, (what, used, effects) in enumerate(rows):
        found = simulate(used, effects, args.min, args.max, args.step, args.sweeps, seed=n)
        best = "-" if len(set(effects)) == 1 else f"{found['declared_best']:.1%}"  # none is
        print(f"| {what} | {found['declared']:.1%} | {best} | {found['mean_seeds']:.1f} |")


if __name__ == "__main__":
    main()
