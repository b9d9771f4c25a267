"""What a report needs to be told rather than guess: which way each metric is better,
which metrics form a criterion, and how criteria are weighed in a ranking.

The same model is the `report:` section of a sweep spec; an experiment family
may carry defaults (`@experiment(report=ReportSettings(...))`), which the spec and then
the command line override key by key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Direction = Literal["lower", "higher"]

# The weight profiles of the seed notebook 002 report, over three criteria.
BUILTIN_PROFILES: dict[str, dict[str, float]] = {
    "research": {"reproducibility": 0.6, "accuracy": 0.3, "speed": 0.1},
    "production": {"reproducibility": 0.4, "accuracy": 0.4, "speed": 0.2},
    "speed": {"reproducibility": 0.2, "accuracy": 0.3, "speed": 0.5},
}


class ReportSettings(BaseModel):
    """The `report:` section of a spec. Every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics: list[str] = Field(
        default_factory=list,
        description="metrics to analyse, in this order; default: every numeric final metric",
    )
    directions: dict[str, Direction] = Field(
        default_factory=dict, description="metric -> lower or higher (is better)"
    )
    criteria: dict[str, list[str]] = Field(
        default_factory=dict, description="criterion -> the metrics it averages"
    )
    profiles: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="ranking profile -> weight per criterion or metric (added to the built-in)",
    )
    units: dict[str, str] = Field(default_factory=dict, description="metric -> unit for axes")

    @model_validator(mode="after")
    def _consistent(self) -> ReportSettings:
        # A criterion's metrics need directions too, but those may come from the family's
        # defaults, merged later: analysis.ranking checks them when it ranks.
        for name, weights in self.profiles.items():
            negative = [k for k, w in weights.items() if w < 0]
            if negative or not any(w > 0 for w in weights.values()):
                raise ValueError(f"profiles.{name}: weights must be >= 0 and not all zero")
        return self

    def merged(self, other: ReportSettings | None) -> ReportSettings:
        """These settings overridden by `other`, key by key inside each field."""
        if other is None:
            return self
        mine, theirs = self.model_dump(), other.model_dump(exclude_defaults=True)
        for key, value in theirs.items():
            mine[key] = value if isinstance(value, list) else {**mine[key], **value}
        return ReportSettings(**mine)

    def within(self, reported: list[str]) -> ReportSettings:
        """These settings with only the listed metrics that were `reported`: an experiment's
        defaults name every metric it can report, and a sweep may not have them all (an
        older version's, or one whose parameters leave a metric out)."""
        return self.model_copy(update={"metrics": [m for m in self.metrics if m in reported]})

    def all_profiles(self) -> dict[str, dict[str, float]]:
        """Built-in profiles whose criteria all exist here, then the declared ones."""
        builtin = {
            name: weights
            for name, weights in BUILTIN_PROFILES.items()
            if set(weights) <= set(self.criteria)
        }
        return {**builtin, **self.profiles}

    def unit(self, metric: str) -> str:
        """The declared unit, else one read off the name (`_s`, `_ms`, `_pct`, `x_per_s`)."""
        if metric in self.units:
            return self.units[metric]
        what, per, _ = metric.rpartition("_per_s")
        if per and not _:
            return f"{what.rsplit('_', 1)[-1]}/s"
        for suffix, unit in (("_ms", "ms"), ("_s", "s"), ("_pct", "%")):
            if metric.endswith(suffix):
                return unit
        return ""
