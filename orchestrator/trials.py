"""The trials a spec expands to, and their stable ids.

A trial's config is params + one grid cell + a seed. Its id is a hash of the
experiment and that config, so the same cell gets the same id in every run:
that is what makes resume and extend work.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.spec import SweepSpec, linked


def trial_id(experiment: str, config: dict[str, Any]) -> str:
    """Stable 16-hex-digit id of (experiment, full config including seed)."""
    blob = json.dumps({"experiment": experiment, "config": config}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def config_id(experiment: str, config: dict[str, Any]) -> str:
    """Stable 16-hex-digit id of (experiment, config without its seed): the same for every
    seed of a config, so `groupby("config_id")` gives a config's seeds."""
    return trial_id(experiment, {k: v for k, v in config.items() if k != "seed"})


def expand(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every trial config of a grid sweep: params x grid cells x seeds, in spec order.

    A grid entry that is a list of mappings contributes one mapping per cell,
    setting several keys together (activation with its beta, say).
    """
    choices = [
        values if linked(values) else [{key: v} for v in values]
        for key, values in spec.grid.items()
    ]
    cells = [
        dict(pair for part in cell for pair in part.items()) for cell in itertools.product(*choices)
    ]
    return [{**spec.params, **cell, "seed": seed} for cell in cells for seed in spec.seed_list]


@dataclass(frozen=True)
class TrialIndex:
    """The configs of a run's trials: a grid's by id (a Tune config names them, as
    orchestrator/worker/bundles.py says); in a search sweep, those of a config a searcher
    sampled, one per seed."""

    experiment: str
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # grid mode: by id
    # search mode: a sampled config as the trial runs it (orchestrator/params.effective)
    complete: Callable[[dict[str, Any]], dict[str, Any]] = dict
    seeds: tuple[int, ...] = (0,)  # search mode: every sampled config runs with each
    done: frozenset[str] = frozenset()  # search mode: trials with a successful row

    def seeds_of(self, sampled: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The trials of a config a searcher sampled, one per seed, by id (done or not)."""
        configs = (self.complete({**sampled, "seed": seed}) for seed in self.seeds)
        return {trial_id(self.experiment, config): config for config in configs}


def search_space(spec: SweepSpec) -> dict[str, Any]:
    """The Tune param space for random / Optuna search: grid entries become distributions.
    The seed is no part of it: each sampled config runs with every seed."""
    from ray import tune

    def domain(values: Any) -> Any:
        if isinstance(values, list):
            return tune.choice(values)
        kind, args = next(iter(values.items()))
        return tune.choice(args) if kind == "choice" else getattr(tune, kind)(*args)

    return {**spec.params, **{key: domain(values) for key, values in spec.grid.items()}}
