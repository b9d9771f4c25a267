"""How far a fused seed drifts from its solo run over a long training run.

Fused and solo training compute the same thing with sums taken in another order; over
a few steps they agree to float32 rounding (the tests check 1e-4), but training is
chaotic and amplifies the difference. This trains seeds 0 and 1 alone and fused (the
settings of experiments/sweeps/activations-full.yaml, 1,200 steps, one thread) and
prints the prediction difference between each seed's fused and solo models, beside
that between the two seeds' solo models.

    python benchmarks/fused_drift.py [--activation relu] [--steps 1200]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml
from common import script_parser

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repo, run from anywhere

from analysis.reproducibility import prediction_difference  # noqa: E402
from experiments.reproducibility import ReproducibilityParams, train_lms  # noqa: E402
from orchestrator import Trial  # noqa: E402
from orchestrator.params import effective  # noqa: E402


def train(config: dict, seeds: list[int]) -> list[dict]:
    """The seeds trained together (one seed: alone); each member's final metrics and
    saved predictions."""
    configs = [effective(ReproducibilityParams, {**config, "seed": s}) for s in seeds]
    saved: list[dict] = [{} for _ in seeds]

    def saver(member: int):
        return lambda name, value: saved[member].__setitem__(name, value) or ""

    trials = [Trial(f"t{s}", c, "cpu", lambda m: None, saver(i))
              for i, (s, c) in enumerate(zip(seeds, configs, strict=True))]  # fmt: skip
    finals = train_lms(configs, trials)
    return [{**final, **artifacts} for final, artifacts in zip(finals, saved, strict=True)]


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--steps", type=int, default=1200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = yaml.safe_load((ROOT / "experiments" / "sweeps" / "activations-full.yaml").read_text())
    config = {**spec["params"], "activation": args.activation, "steps": args.steps}
    solo = [train(config, [seed])[0] for seed in (0, 1)]
    fused = train(config, [0, 1])
    labels = solo[0]["targets.npy"]

    def pd_line(name: str, a: dict, b: dict) -> str:
        d = prediction_difference(a["probs.npy"], b["probs.npy"], labels)
        return (f"  {name:<22} pd {d['pd']:.4f}  relative_pd {d['relative_pd']:.4f}  "
                f"top-1 mismatch {d['top1_mismatch_pct']:.1f}%")  # fmt: skip

    print(f"{args.activation}, {args.steps} steps; val_loss solo "
          f"{solo[0]['val_loss']:.4f} / {solo[1]['val_loss']:.4f}, fused "
          f"{fused[0]['val_loss']:.4f} / {fused[1]['val_loss']:.4f} (seed 0 / seed 1)")  # fmt: skip
    print(pd_line("seed 0 fused vs solo", fused[0], solo[0]))
    print(pd_line("seed 1 fused vs solo", fused[1], solo[1]))
    print(pd_line("seed 0 vs seed 1, solo", solo[0], solo[1]))


if __name__ == "__main__":
    main()
