"""`sweep confirm`: the spec of the sweep that runs the best configs of a sweep again on
fresh seeds.

The best config of a grid is a best-of-K pick whose mean and interval come from the
data that chose it. `confirmation` ranks a sweep's configs (its successful trials
grouped by config without the seed) by the mean of a metric over their seeds, and
writes the spec of a linked sweep, `<name>-confirm` in the same storage: the same
experiment, the K best configs (the keys they share as `params`, the keys that differ
as one grid entry of mappings), seeds the sweep never used, its resources, limits,
retries, bundle, inputs and report settings, and `confirms: {sweep, metric, mode, top}`.
Running it is an ordinary `run_sweep`, so running confirm again resumes or extends it;
the report of the first sweep finds it by `confirms.sweep` (analysis/confirm.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.confirm import GRID_ENTRY, native, ranked_configs
from orchestrator.errors import InputError, did_you_mean
from orchestrator.objective import family_defaults, goal
from orchestrator.store.folder import store_at

# What the linked sweep copies from the confirmed sweep's spec, as it is.
COPIED = ("resources", "max_concurrent", "retries", "limits", "bundle", "report")


@dataclass
class Confirmation:
    """What `sweep confirm` runs: the linked sweep's spec, where its experiment's module is,
    and the confirmed sweep's configs ranked (best first; `top` of them chosen)."""

    spec: dict[str, Any]
    source_dir: Path
    ranked: pd.DataFrame  # analysis.confirm.rank's table: every config, best first
    keys: list[str]  # the config keys, without the seed
    metric: str
    mode: str
    top: int

    @property
    def chosen(self) -> pd.DataFrame:
        return self.ranked.head(self.top)

    @property
    def candidates(self) -> int:
        """Configs with a value, the pick was among."""
        return int(self.ranked["rank"].notna().sum())

    def describe(self) -> list[str]:
        """The pick, one line per chosen config (as YAML comments)."""
        name, seeds = self.spec["confirms"]["sweep"], self.spec["seeds"]
        lines = [
            f"# sweep {self.spec['name']}: the {self.top} best of {self.candidates} configs of "
            f"{name} by mean {self.metric} over seeds ({self.mode} is better), again on "
            f"{len(seeds)} fresh seeds {seeds}"
        ]
        varying = [k for k in self.keys if self.ranked[k].nunique(dropna=False) > 1] or self.keys
        for row in self.chosen.itertuples(index=False):
            values = dict(zip(self.chosen.columns, row, strict=True))
            config = " ".join(f"{k}={native(values[k])}" for k in varying)
            lines.append(
                f"#   {values['rank']}. {config}: mean {values['mean']:.6g} over "
                f"{values['n']} seeds"
            )
        return lines


def used_seeds(spec: dict[str, Any], seeds: Iterable[Any]) -> set[int]:
    """Every seed a sweep ran or may run: its spec's seeds (a count N: 0 to N-1; seeds
    added until decided: up to their max) and the `seeds` its trials have."""
    asked = spec.get("seeds", 1)
    if isinstance(asked, dict):
        listed = range(int(asked.get("max", 0)))
    elif isinstance(asked, int):
        listed = range(asked)
    else:
        listed = asked or []
    return {int(s) for s in listed} | {int(s) for s in seeds if not pd.isna(s)}


def fresh_seeds(used: set[int], count: int) -> list[int]:
    """`count` seeds after the largest used one: the same list each time for the same
    sweep, so that confirming again resumes, and a larger count extends."""
    start = max(used) + 1 if used else 0
    return list(range(start, start + count))


def confirmation(
    sweep_dir: str,
    top: int,
    seeds: int,
    metric: str | None = None,
    mode: str | None = None,
) -> Confirmation:
    """The linked sweep that runs the `top` best configs of the sweep in `sweep_dir` again
    on `seeds` fresh seeds; InputError (nothing written) when it cannot be made."""
    from analysis.sweep import load

    sweep = load(sweep_dir, steps=False)
    if len(sweep.meta) != 1:
        raise InputError(
            f"{sweep_dir}: holds several sweeps ({', '.join(sweep.names)}); give one sweep folder"
        )
    name, meta = next(iter(sweep.meta.items()))
    spec = meta.get("spec") or {}
    settings = family_defaults(meta).merged(sweep.settings())
    metric, mode = goal(spec, settings, metric, mode, sweep_dir)
    if metric not in sweep.final_metrics:
        raise InputError(
            f"{sweep_dir}: no final metric {metric!r}{did_you_mean(metric, sweep.final_metrics)};"
            f" its metrics: {', '.join(sweep.final_metrics) or 'none'}"
        )
    ranked, keys = ranked_configs(sweep, metric, mode)
    candidates = int(ranked["rank"].notna().sum())
    if top > candidates:
        raise InputError(
            f"--top {top}: {sweep_dir} has {candidates} configs with a mean of {metric} "
            "(successful trials, no NaN); give --top at most that"
        )
    used = used_seeds(spec, sweep.trials.get("seed", []))
    linked = {
        "name": f"{name}-confirm",
        "experiment": meta["experiment"],
        "description": f"the {top} best configs of {name} by mean {metric} ({mode}), "
        "on fresh seeds",
        **_configs(ranked.head(top), keys),
        "seeds": fresh_seeds(used, seeds),
        "storage": store_at(sweep_dir).root,
        **{key: spec[key] for key in COPIED if spec.get(key) not in (None, {})},
        **({"inputs": meta.get("inputs") or spec["inputs"]} if spec.get("inputs") else {}),
        "confirms": {"sweep": name, "metric": metric, "mode": mode, "top": top},
    }
    source = Path(meta["source_dir"]) if meta.get("source_dir") else Path.cwd()
    return Confirmation(linked, source, ranked, keys, metric, mode, top)


def _configs(chosen: pd.DataFrame, keys: list[str]) -> dict[str, Any]:
    """`params` (the keys every chosen config has, with one value) and `grid` (one entry:
    a mapping per config of the other keys); one config: all of it in params."""
    configs = [
        {k: v for k in keys if (v := native(row[k])) is not None} for _, row in chosen.iterrows()
    ]
    first = configs[0]
    shared = [k for k in keys if all(k in c and c[k] == first.get(k) for c in configs)]
    params = {k: first[k] for k in shared}
    if len(configs) == 1:
        return {"params": params}
    differing = [{k: v for k, v in c.items() if k not in shared} for c in configs]
    return {"params": params, "grid": {GRID_ENTRY: differing}}
