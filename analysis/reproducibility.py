"""Prediction difference between models trained alike (SCIENCE.md section 1).

For two models A and B scored on the SAME N positions, with class distributions
P_A,k and P_B,k and true labels y_k:
  PD            (1 / 2N) sum_k sum_l |P_A,k(l) - P_B,k(l)|         (total variation)
  relative PD   (1 / N) sum_k |P_A,k(y_k) - P_B,k(y_k)| / ((P_A,k(y_k) + P_B,k(y_k)) / 2)
  top-1 mismatch  % of positions where argmax P_A,k != argmax P_B,k
`write_pairs` computes them for every pair of seeds of each config of a sweep
from the trials' saved distributions, into `<sweep>/pairs/pairs.parquet`.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis.aggregates import aggregate
from analysis.document import Section, fmt, markdown_table
from analysis.pairs import METHOD, MIN_MODELS, models, pair_mean
from analysis.settings import ReportSettings
from analysis.sweep import Folder, Sweep, load
from analysis.tables import Status, read_parquet

PAIR_METRICS = ["pd", "relative_pd", "top1_mismatch_pct"]
# What `sweep report` knows about this family (the spec's report: section overrides it).
REPORT = ReportSettings(
    metrics=["val_loss", "train_loss", "tokens_per_s", "train_time_s"],
    directions={
        "val_loss": "lower",
        "train_loss": "lower",
        "tokens_per_s": "higher",
        "train_time_s": "lower",
        **dict.fromkeys(PAIR_METRICS, "lower"),
    },
    criteria={"reproducibility": PAIR_METRICS, "accuracy": ["val_loss"], "speed": ["tokens_per_s"]},
)


def prediction_difference(p_a: np.ndarray, p_b: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """PD, relative PD and top-1 mismatch % of two (N, classes) probability arrays."""
    if p_a.shape != p_b.shape or p_a.ndim != 2 or labels.shape != (p_a.shape[0],):
        raise ValueError(f"shapes differ: {p_a.shape}, {p_b.shape}, labels {labels.shape}")
    rows = np.arange(len(labels))
    on_a, on_b = p_a[rows, labels], p_b[rows, labels]
    mean = (on_a + on_b) / 2
    relative = np.divide(np.abs(on_a - on_b), mean, out=np.zeros_like(mean), where=mean > 0)
    return {
        "pd": float(0.5 * np.abs(p_a - p_b).sum(axis=1).mean()),
        "relative_pd": float(relative.mean()),
        "top1_mismatch_pct": float(100 * np.mean(p_a.argmax(axis=1) != p_b.argmax(axis=1))),
        "n_positions": len(labels),
    }


def compute_pairs(
    sweep_dir: str | Path, probs: str = "probs.npy", labels: str = "targets.npy"
) -> pd.DataFrame:
    """One row per pair of successful trials that differ only in their seed; the sweep
    folder may be a local path or a URI (s3://...)."""
    folder = Folder.at(sweep_dir)  # only sweep.json and trials/: the metrics are not needed
    meta = json.loads(folder.read("sweep.json"))
    trials = read_parquet(folder.fs, folder.parquet_files("trials"))[0].to_pandas()
    trials = trials[trials["status"] == Status.OK].drop_duplicates("trial_id").sort_values("seed")
    group_cols = [c for c in meta["config_columns"] if c != "seed"]
    arrays = functools.cache(lambda trial_id: _arrays(folder, trial_id, probs, labels))
    rows = []
    for key, group in trials.groupby(group_cols, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        for a, b in itertools.combinations(group.itertuples(index=False), 2):
            (p_a, y_a), (p_b, y_b) = arrays(a.trial_id), arrays(b.trial_id)
            if not np.array_equal(y_a, y_b):
                raise ValueError(
                    f"trials {a.trial_id} and {b.trial_id} were scored on different positions"
                )
            rows.append(
                {
                    **dict(zip(group_cols, key, strict=True)),
                    "seed_a": a.seed,
                    "seed_b": b.seed,
                    "trial_a": a.trial_id,
                    "trial_b": b.trial_id,
                    **prediction_difference(p_a, p_b, y_a),
                }
            )
    return pd.DataFrame(rows)


def write_pairs(sweep_dir: str | Path) -> str:
    """Compute the pairs of a sweep and write them, whole or not at all, to
    pairs/pairs.parquet in the sweep's folder (local or in a bucket)."""
    buffer = io.BytesIO()
    compute_pairs(sweep_dir).to_parquet(buffer, index=False)
    return Folder.at(sweep_dir).write("pairs/pairs.parquet", buffer.getvalue())


def _arrays(folder: Folder, trial_id: str, probs: str, labels: str) -> tuple[np.ndarray, ...]:
    return tuple(
        np.load(io.BytesIO(folder.read(f"artifacts/{trial_id}/{name}"))) for name in (probs, labels)
    )


def summary(sweep_dir: str | Path) -> pd.DataFrame:
    """Per config: PD, relative PD and top-1 mismatch over its pairs of seeds, and the
    validation loss over its seeds, each with n and a 95% t-interval.

    The pairs of one config share models (5 seeds give 10 pairs), so they are not
    independent: the interval over pairs is narrower than it should be.
    """
    sweep = load(sweep_dir)
    varying = [key for keys in sweep.grid_factors.values() for key in keys if key != "sweep"]
    pairs = sweep.pairs if sweep.pairs is not None else pd.DataFrame(columns=varying)
    return pd.concat(
        [aggregate(pairs, varying, PAIR_METRICS), aggregate(sweep.ok, varying, ["val_loss"])],
        ignore_index=True,
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m analysis.reproducibility SWEEP_DIR`: the summary as a Markdown table."""
    import sys

    table = summary((argv or sys.argv[1:])[0])
    by = list(table.columns[: table.columns.get_loc("metric")])
    interval = [
        f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)
    ]
    shown = table[[*by, "metric", "n", "mean"]].assign(**{"95% interval": interval})
    print(markdown_table(shown))


def _shared_inputs(sweep: Sweep) -> str:
    """Whether the seeds of each group were scored on the same positions (PD needs it)."""
    if "eval_inputs_sha1" not in sweep.ok:
        return "Evaluation inputs: not recorded (no eval_inputs_sha1), so not checked."
    ids = sweep.ids.assign(inputs=sweep.ok["eval_inputs_sha1"].to_numpy())
    per_group = ids.groupby("group")["inputs"].nunique()
    differ = per_group[per_group > 1].index.tolist()
    if differ:
        return (
            f"**Evaluation inputs differ between the seeds of {', '.join(differ)}: their PD "
            "compares different inputs.**"
        )
    return (
        f"Evaluation inputs: the seeds of every group were scored on the same positions "
        f"({ids['inputs'].nunique()} distinct input set(s) over {len(ids)} trials)."
    )


def report_section(sweep: Sweep, settings: ReportSettings) -> list[Section]:
    """The family's part of `sweep report`: are the evaluation inputs shared, and PD per group."""
    section = Section("Prediction difference between seeds (Shamir et al. 2020)")
    section.add(
        "For two models trained alike but for the seed, scored on the same N positions: "
        "**PD** = (1/2N) Σ_k Σ_l |P_A,k(l) - P_B,k(l)| (total variation); **relative PD** on "
        "the true label; **top-1 mismatch** = % of positions where the argmax differs."
    )
    section.add(_shared_inputs(sweep))
    if sweep.pairs is None:
        return [section.add("No pairs/ table: the after-sweep step did not run or failed.")]
    pairs = sweep.pairs.assign(group=sweep.label(sweep.pairs))
    section.add(_model_level(pairs, [m for m in PAIR_METRICS if m in pairs] or sweep.pair_metrics))
    section.add(
        f"Intervals: {METHOD}. k seeds give k(k-1)/2 pairs, each seed in k - 1 of them, so "
        "a t-interval over the pairs would be too narrow; the interval here is mean ± "
        f"t(seeds - 1) × the jackknife SE (leaving one seed out removes all its pairs), "
        f"none with fewer than {MIN_MODELS} seeds. Groups are compared in the Significance "
        "section by the same method."
    )
    return [section]


def _model_level(pairs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per group and pair metric: seeds, pairs, mean, jackknife SE and 95% interval."""
    pairs = pairs.reset_index(drop=True)
    model_a, model_b = models(pairs)
    rows = []
    for metric in metrics:
        for group, frame in pairs.groupby("group", sort=True):
            level = pair_mean(model_a[frame.index], model_b[frame.index], frame[metric])
            half = stats.t.ppf(0.975, max(level.n_models - 1, 1)) * level.se  # NaN se: none
            rows.append(
                {
                    "group": group,
                    "seeds": level.n_models,
                    "metric": metric,
                    "pairs": level.n_pairs,
                    "mean": level.mean,
                    "SE (jackknife)": level.se,
                    "95% interval": "-"
                    if not np.isfinite(half)
                    else f"[{fmt(level.mean - half)}, {fmt(level.mean + half)}]",
                }
            )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
