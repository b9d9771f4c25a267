"""Sweeps that a sweep reads from: `inputs: {models: results/lm-sizes}` in a spec.

A decoding sweep uses the models a training sweep saved, instead of training
them again in each of its trials. The runner checks every input before anything
is written (a sweep folder with successful trials), records it in sweep.json,
and hands trials a `SweepInput` per name: `trial.inputs["models"]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.tables import SUCCESS
from orchestrator.errors import InputError
from orchestrator.store.folder import SweepStore, store_at


@dataclass
class SweepInput:
    """Another sweep's successful trials and their artifacts, read on demand."""

    name: str
    uri: str  # the sweep folder, absolute (or a bucket URI)
    _trials: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def _store(self) -> SweepStore:
        return store_at(self.uri)

    def trials(self) -> pd.DataFrame:
        """One row per successful trial (its last successful attempt)."""
        if self._trials is None:
            table = self._store().read("trials")
            done = table[table["status"].isin(SUCCESS)]
            self._trials = done.sort_values("attempt").drop_duplicates("trial_id", keep="last")
        return self._trials

    def find(self, **config: Any) -> str:
        """The id of the one successful trial whose config has these values."""
        trials = self.trials()
        unknown = [k for k in config if k not in trials]
        if unknown:
            raise KeyError(f"input {self.name} ({self.uri}) has no config key {unknown}")
        match = trials
        for key, value in config.items():
            match = match[match[key] == value]
        if len(match) != 1:
            found = "no successful trial" if match.empty else f"{len(match)} trials"
            raise LookupError(f"input {self.name} ({self.uri}): {found} with {config}")
        return str(match["trial_id"].iloc[0])

    def artifact(self, trial_id: str, name: str) -> str:
        """Where a trial of this input saved `name` (open it with fsspec/pyarrow for URIs)."""
        return self._store().artifact_path(trial_id, name)


def resolve_inputs(inputs: dict[str, str]) -> dict[str, SweepInput]:
    """Each named input as a SweepInput; InputError if one is not a sweep with results.
    Relative paths are relative to where you run, like `storage`."""
    resolved = {}
    for name, where in inputs.items():
        store = store_at(where)
        if not store.exists():
            raise InputError(
                f"inputs.{name}: {store.uri} is not a sweep folder (no sweep.json); "
                "run that sweep first, or fix the path (relative to where you run)"
            )
        table = store.read("trials", ["status"])
        if not table["status"].isin(SUCCESS).any():
            raise InputError(f"inputs.{name}: {store.uri} has no successful trial yet")
        resolved[name] = SweepInput(name, store.uri)
    return resolved
