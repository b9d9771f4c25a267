"""Seeds added until decided: a sequential sweep, run as rounds of an ordinary grid sweep.

With `seeds: {min, max, step, until: {metric, by, mode}}`, a comparison (a stratum: the cells
that share every config key but `by` and the seed) first runs `min` seeds of each of its
cells; at each look it is decided when its best level of `by` beats every other level
(analysis/sequential.py), else its cells get `step` more seeds, up to `max`. Everything is
replayed from the trials table, look by look, so a run killed mid-round continues that
round when run again, and a rerun of a finished sweep runs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
import pandas as pd

from analysis.sequential import Rule, Verdict, looks, verdict
from analysis.tables import SUCCESS
from orchestrator.spec import Rounds


@dataclass
class Comparison:
    """One stratum: its cells' trials by seed, and where its looks have got to."""

    label: str
    trials: dict[int, list[str]]  # seed -> the trial ids of the stratum's cells
    seeds: int = 0  # the seeds per cell its last complete look had
    verdict: Verdict | None = None
    pending: list[str] = field(default_factory=list)  # trials its next look needs

    def line(self, rule: Rule) -> str:
        v = self.verdict
        if v is not None and v.decided:
            return (
                f"  {self.label}: decided after {self.seeds} seeds: best {rule.by}={v.best} "
                f"(p <= {v.p_max:.2g} against each other level)"
            )
        best = f"; best so far {rule.by}={v.best}, p = {v.p_max:.2g}" if v and v.best else ""
        if self.pending and v is None:
            return f"  {self.label}: running its first {self.seeds_next()} seeds"
        if self.pending:
            return f"  {self.label}: undecided after {self.seeds} seeds{best}; next, up to " + (
                f"{self.seeds_next()}"
            )
        return f"  {self.label}: undecided after {self.seeds} seeds, the most{best}"

    def seeds_next(self) -> int:
        """The seeds per cell its next look has."""
        return max(
            (seed + 1 for seed, ids in self.trials.items() if set(ids) & set(self.pending)),
            default=0,
        )


def rule_of(rounds: Rounds) -> Rule:
    """The decision rule of a sequential sweep: alpha over every look it may take."""
    until, planned = rounds.until, looks(rounds.min, rounds.max, rounds.step)
    return Rule(until.metric, until.by, until.mode, until.alpha, planned)


def comparisons(
    configs: dict[str, dict[str, Any]],
    trials: pd.DataFrame,
    rounds: Rounds,
    settled: set[str],
) -> list[Comparison]:
    """Each stratum replayed look by look on the trials so far: decided, out of seeds, or
    with the trials its next look needs. `settled`: trials that failed in this call (they
    count as run, without a value, until the sweep runs again)."""
    rule = rule_of(rounds)
    ok = trials[trials["status"].isin(SUCCESS)] if len(trials) else trials
    done = set(ok["trial_id"]) | settled
    has = rule.metric in ok
    values = ok.drop_duplicates("trial_id").set_index("trial_id")[rule.metric] if has else {}
    result = []
    for label, by_seed in _strata(configs, rule).items():
        comparison = Comparison(label, by_seed)
        n = rounds.min
        while True:
            needed = [tid for seed in range(n) for tid in by_seed.get(seed, [])]
            missing = [tid for tid in needed if tid not in done]
            if missing:
                comparison.pending = missing
                break
            comparison.seeds = n
            comparison.verdict = verdict(_levels(needed, configs, values, rule), rule)
            if comparison.verdict.decided or n >= rounds.max:
                break
            n = min(n + rounds.step, rounds.max)
        result.append(comparison)
    return result


def _strata(configs: dict[str, dict[str, Any]], rule: Rule) -> dict[str, dict[int, list[str]]]:
    """The trials of each stratum by seed, the stratum named by the keys that vary."""
    keys = {k for config in configs.values() for k in config} - {rule.by, "seed"}
    first = next(iter(configs.values()), {})
    varying = [k for k in sorted(keys) if any(c.get(k) != first.get(k) for c in configs.values())]
    strata: dict[str, dict[int, list[str]]] = {}
    for tid, config in configs.items():
        label = ", ".join(f"{k}={config.get(k)}" for k in varying) or "all cells"
        strata.setdefault(label, {}).setdefault(config["seed"], []).append(tid)
    return strata


def _levels(
    ids: list[str], configs: dict[str, dict[str, Any]], values: Any, rule: Rule
) -> dict[Any, np.ndarray]:
    """Each level's values of the metric (`values`, by trial id) among the trials `ids`
    that succeeded with a value, the levels in order."""
    found: dict[Any, list[float]] = {}
    for tid in ids:
        value = values.get(tid)
        if not pd.isna(value):
            found.setdefault(configs[tid][rule.by], []).append(value)
    return {level: np.asarray(found[level], float) for level in sorted(found)}


def run(
    configs: dict[str, dict[str, Any]],
    rounds: Rounds,
    read_trials: Callable[[], pd.DataFrame],
    run_round: Callable[[dict[str, dict[str, Any]]], set[str] | None],
    out: TextIO | None,
) -> list[str]:
    """Run rounds until no comparison needs more seeds. `run_round(configs)` runs a round's
    trials and returns those that failed, or None when the round did not finish
    (interrupted, aborted: the sweep stops there, to be run again). Returns the last
    lines: each comparison's state, and why the sweep stopped."""
    rule, settled, number = rule_of(rounds), set(), 0
    while True:
        state = comparisons(configs, read_trials(), rounds, settled)
        pending = {tid for c in state for tid in c.pending}
        if number and pending and out is not None:
            out.write(_report(f"after round {number}:", state, rule) + "\n")
        if not pending:
            return _report(_why(state), state, rule).splitlines()
        number += 1
        failed = run_round({tid: configs[tid] for tid in configs if tid in pending})
        if failed is None:
            return _report("stopped before the round ended:", state, rule).splitlines()
        settled |= failed


def _report(head: str, state: list[Comparison], rule: Rule) -> str:
    return "\n".join([head, *(c.line(rule) for c in state)])


def _why(state: list[Comparison]) -> str:
    undecided = sum(not (c.verdict and c.verdict.decided) for c in state)
    if not undecided:
        return f"stopped: every comparison is decided ({len(state)})"
    return f"stopped: {undecided} of {len(state)} comparisons undecided at the most seeds"
