"""The tri-decoding family's part of a report (SCIENCE.md section 2): speedup over the
threshold grid as a heat map, measured against predicted speedup, and the caveat
that acceptance rates under adaptive stopping are selection-biased."""

from __future__ import annotations

from analysis import plots
from analysis.aggregates import curve
from analysis.document import Plot, Section, fmt
from analysis.settings import ReportSettings
from analysis.sweep import Sweep

THRESHOLDS = ("small_draft_threshold", "draft_target_threshold")
RATES = ("little_acceptance_rate", "draft_acceptance_rate")  # each set by its threshold
REPORT = ReportSettings(
    metrics=["speedup", "speedup_vs_two_level", "two_level_speedup", "predicted_speedup",
             "little_acceptance_rate", "draft_acceptance_rate", "tokens_per_target_call",
             "matches_target"],
    directions={"speedup": "higher", "speedup_vs_two_level": "higher", "tokens_per_s": "higher",
                "tokens_per_target_call": "higher", "little_acceptance_rate": "higher",
                "draft_acceptance_rate": "higher", "matches_target": "higher"},
    units={"speedup": "x", "speedup_vs_two_level": "x", "two_level_speedup": "x",
           "predicted_speedup": "x", "tokens_per_target_call": "tokens"},
)  # fmt: skip


def report_section(sweep: Sweep, settings: ReportSettings) -> list[Section]:
    section = Section("Tri-decoding: speedup over the threshold grid")
    trials = sweep.ok
    if not set(THRESHOLDS) <= set(trials.columns) or "speedup" not in trials:
        return [section.add("No threshold grid with a speedup here.")]
    grid = trials.pivot_table(index=THRESHOLDS[0], columns=THRESHOLDS[1], values="speedup")
    best = trials.groupby(list(THRESHOLDS))["speedup"].mean().idxmax()
    mean_best = grid.loc[best[0], best[1]]
    section.add(
        "Speedup is target-only decoding time over tri-decoding time for the same prompts "
        "in the same trial (mean over seeds in each cell); above 1 tri-decoding is faster. "
        f"Best cell: small_draft_threshold {best[0]:g}, draft_target_threshold {best[1]:g}: "
        f"{fmt(mean_best)}x. Two-level speculative decoding in the same trials: "
        f"{fmt(trials['two_level_speedup'].mean())}x on average; tri over two-level: "
        f"{fmt(trials['speedup_vs_two_level'].mean())}x.",
        Plot(
            "speedup-heatmap",
            plots.heatmap(grid, "Speedup over target-only decoding", "speedup (x)"),
        ),
    )
    if "predicted_speedup" in trials:
        error = (trials["speedup"] / trials["predicted_speedup"]).median()
        section.add(
            "Measured against predicted: the formula (1 - a^(g+1)) / ((1 - a)(g c + 1)) with "
            "a the draft acceptance rate, g the mean draft length per target call and c the "
            f"measured cost of a drafted token over a target call. Median measured/predicted: "
            f"{fmt(error)}.",
            Plot(
                "speedup-measured-vs-predicted",
                plots.scatter(
                    trials["predicted_speedup"], trials["speedup"], "Measured vs predicted speedup"
                ),
            ),
        )
    panels = [
        (curve(trials, threshold, [], rate), threshold, rate)
        for threshold, rate in zip(THRESHOLDS, RATES, strict=True)
        if rate in trials
    ]
    title = "Acceptance rate against its threshold (the other threshold and seeds pooled)"
    section.add(Plot("acceptance-vs-thresholds", plots.bands(panels, title)))
    return [
        section.add(
            "Acceptance rates are selection-biased under adaptive stopping: a higher threshold "
            "drafts shorter, more confident blocks that are accepted more often, so read them "
            "with tokens per target call and the measured speedup, never alone."
        )
    ]
