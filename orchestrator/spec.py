"""The sweep spec: what a YAML file may say, validated, with `--set` overrides.

A spec names an experiment, the grid to sweep, the seeds, fixed params and the
resources per trial. Everything is checked here, before Ray starts or a file is
written, and every problem is reported with where it is and what to do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from analysis.settings import ReportSettings
from analysis.tables import BOOKKEEPING
from orchestrator.errors import InputError, did_you_mean

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
# Columns of the trials and metrics tables that a config key must not shadow; the
# analysis reads them as bookkeeping, duration_s and step as results.
RESERVED_KEYS = BOOKKEEPING | {"duration_s", "step"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    """What one trial asks Ray for. Fractions of a GPU let several trials share one."""

    cpu: float = Field(1.0, ge=0)
    gpu: float = Field(0.0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float) -> float:
        if gpu > 1 and not float(gpu).is_integer():
            raise ValueError("a trial asks for a fraction of one GPU or a whole number of GPUs")
        return gpu


class Search(_Strict):
    """How trials are chosen: the full grid, or configs sampled by a Ray Tune searcher, each
    run with every seed; the searcher is told `aggregate` over a config's seeds of `metric`
    (worst: the max for mode min, the min for mode max)."""

    algorithm: Literal["grid", "random", "optuna"] = "grid"
    num_samples: Annotated[StrictInt, Field(gt=0)] | None = None
    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    aggregate: Literal["mean", "median", "worst"] = "mean"

    @model_validator(mode="after")
    def _complete(self) -> Search:
        if self.algorithm == "grid" and self.num_samples is not None:
            raise ValueError("num_samples applies to search random or optuna; grid runs every cell")
        if self.algorithm != "grid" and self.num_samples is None:
            raise ValueError(
                f"search {self.algorithm} needs num_samples (how many configs; each runs "
                "with every seed)"
            )
        if self.algorithm == "optuna" and (self.metric is None or self.mode is None):
            raise ValueError("search optuna needs metric and mode (min or max)")
        if self.aggregate == "worst" and self.mode is None:
            raise ValueError("search aggregate worst needs mode (min or max): worst is max or min")
        return self


class Scheduler(_Strict):
    """ASHA early stopping on a reported metric, with `step` as the time axis."""

    algorithm: Literal["asha"] = "asha"
    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    max_t: Annotated[StrictInt, Field(gt=0)] = 100
    grace_period: Annotated[StrictInt, Field(gt=0)] = 1
    reduction_factor: float = Field(4.0, gt=1)


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|[smh])?\s*")


def seconds(value: Any) -> float:
    """A duration: a number of seconds (also as text), or text with a unit, ms, s, m or h
    (`500ms`, `90s`, `10m`, `2h`)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        found = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        found = float(match[1]) * _UNITS[match[2] or "s"]
    else:
        raise ValueError(f"{value!r} is no duration; give seconds (90) or 90s, 10m, 2h")
    if found <= 0:
        raise ValueError(f"{value!r}: a duration is more than zero")
    return found


class Limits(_Strict):
    """How long one attempt may take, and may stay silent (no `trial.report`), before it is
    stopped and recorded as `timeout`; how long trials may hold their resources with no
    worker started to run them before the sweep stops (orchestrator/faults/stuck.py). None: no
    limit."""

    trial_time: float | None = None
    report_gap: float | None = None
    start_time: float | None = 300.0

    @field_validator("trial_time", "report_gap", "start_time", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else seconds(value)


class Bundle(_Strict):
    """Trials handed to one Ray Tune trial (orchestrator/worker/bundles.py): those that differ only
    in the keys of `by` (default: the seed; "*": in any key), up to `size` at a time; `auto`:
    a size chosen before the bundles run (orchestrator/autobundle.py)."""

    size: Annotated[StrictInt, Field(gt=0)] | Literal["auto"]
    by: Literal["*"] | list[str] = ["seed"]


class Until(_Strict):
    """What a sequential sweep decides: which level of `by` is best on `metric` (`mode`),
    within each combination of the other keys; `alpha`: the chance, at most, that a
    comparison whose levels do not differ declares a winner (analysis/sequential.py)."""

    metric: str
    by: str
    mode: Literal["min", "max"]
    alpha: float = Field(0.05, gt=0, lt=1)


class Rounds(_Strict):
    """Seeds added until decided: `min` seeds of every cell, then `step` more at a time to
    the cells whose comparison is not decided, up to `max`."""

    min: Annotated[StrictInt, Field(ge=2)]
    max: StrictInt
    step: Annotated[StrictInt, Field(gt=0)] = 1
    until: Until

    @model_validator(mode="after")
    def _ordered(self) -> Rounds:
        if self.max < self.min:
            raise ValueError(f"seeds.max ({self.max}) is below seeds.min ({self.min})")
        return self


class Confirms(_Strict):
    """What a sweep written by `sweep confirm` confirms: the `top` best configs of sweep
    `sweep` (in the same storage) by mean `metric` over seeds, better in `mode`, run again on
    fresh seeds; the report of that sweep shows both estimates (analysis/confirm.py)."""

    sweep: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    mode: Literal["min", "max"]
    top: Annotated[StrictInt, Field(gt=0)]


def _rounds(raw: dict[str, Any]) -> Rounds:
    """`seeds:` as a mapping, checked, its first problem said as `seeds.<key>: ...`."""
    try:
        return Rounds.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(["seeds", *(str(p) for p in err["loc"])])
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ValueError(f"{where}: {what.removeprefix('Value error, ')}") from None


def _shorthand(value: Any) -> Any:
    """`search: random` means `search: {algorithm: random}`."""
    return {"algorithm": value} if isinstance(value, str) else value


class SweepSpec(_Strict):
    """A validated sweep: read one with `load_spec`."""

    name: str
    experiment: str = Field(min_length=1)
    description: str = ""
    grid: dict[str, Any] = {}
    seeds: int | list[int] | Rounds = 1
    params: dict[str, Any] = {}
    resources: Resources = Resources()
    max_concurrent: Annotated[StrictInt, Field(gt=0)] | None = None
    retries: Annotated[StrictInt, Field(ge=0)] = 0
    limits: Limits = Limits()
    storage: str = "results"
    search: Search = Search()
    scheduler: Scheduler | None = None
    bundle: Bundle | None = None
    report: ReportSettings = ReportSettings()  # read by `sweep report`, owned by analysis
    inputs: dict[str, str] = {}  # name -> a sweep folder whose artifacts trials read
    log: list[Literal["tensorboard", "mlflow", "wandb"]] = []  # trackers (orchestrator/trackers.py)
    confirms: Confirms | None = None  # written by `sweep confirm` (orchestrator/confirm.py)

    @field_validator("search", "scheduler", mode="before")
    @classmethod
    def _algorithm_shorthand(cls, value: Any) -> Any:
        return _shorthand(value)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name):
            raise ValueError(
                "the name is the sweep's folder: letters, digits, '.', '_' and '-', "
                "starting with a letter or digit"
            )
        return name

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_values(cls, seeds: Any) -> int | list[int]:
        def whole(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        if isinstance(seeds, dict):
            return _rounds(seeds)
        if whole(seeds) and seeds >= 1 or isinstance(seeds, Rounds):
            return seeds
        if isinstance(seeds, list) and seeds and all(whole(s) and s >= 0 for s in seeds):
            if len(set(seeds)) != len(seeds):
                raise ValueError(f"seeds repeat: {seeds}")
            return seeds
        raise ValueError(
            "seeds is a count of at least 1 (seeds: 3 means 0, 1, 2), a list of distinct "
            "non-negative integers (seeds: [7, 11]), or seeds added until decided "
            "({min: 3, max: 30, step: 3, until: {metric: M, by: KEY, mode: min}})"
        )

    @field_validator("grid")
    @classmethod
    def _grid_values(cls, grid: dict[str, Any]) -> dict[str, Any]:
        for key, values in grid.items():
            if isinstance(values, dict):
                _check_distribution(key, values)
            elif not isinstance(values, list):
                raise ValueError(
                    f"grid.{key} is {values!r}; a grid value is a list of values to sweep "
                    "(put a fixed value under params)"
                )
            elif not values:
                raise ValueError(f"grid.{key} is an empty list: nothing to sweep")
            elif any(isinstance(v, dict) for v in values) and not all(
                isinstance(v, dict) and v for v in values
            ):
                raise ValueError(
                    f"grid.{key} mixes mappings and values; either every item is a value, "
                    "or every item is a mapping of keys set together, e.g. "
                    "[{activation: relu}, {activation: smelu, beta: 0.5}]"
                )
        return grid

    def grid_keys(self) -> dict[str, list[str]]:
        """Per grid entry, the config keys it sets (a list of mappings sets several)."""
        return {
            entry: list(dict.fromkeys(k for v in values for k in v)) if linked(values) else [entry]
            for entry, values in self.grid.items()
        }

    @property
    def config_keys(self) -> list[str]:
        """The keys of every trial's config, in order: params, grid, then seed."""
        set_by_grid = [k for keys in self.grid_keys().values() for k in keys]
        return list(dict.fromkeys([*self.params, *set_by_grid, "seed"]))

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        mappings = [entry for entry, values in self.grid.items() if linked(values)]
        if mappings and self.search.algorithm != "grid":
            raise ValueError(f"grid.{mappings[0]} is a list of mappings, which needs search: grid")
        set_by_grid = [k for keys in self.grid_keys().values() for k in keys]
        for key in (*self.params, *set_by_grid):
            if key == "seed":
                raise ValueError("seed is a dimension of its own: use `seeds: N` or a list")
            if key in RESERVED_KEYS:
                raise ValueError(f'"{key}" names a column of the trials table; rename the key')
        twice = {k for k in set_by_grid if set_by_grid.count(k) > 1}
        if twice:
            raise ValueError(f"keys set by more than one grid entry: {sorted(twice)}")
        both = set(set_by_grid) & set(self.params)
        if both:
            raise ValueError(f"keys in both grid and params: {sorted(both)}")
        if not self.grid and self.search.algorithm != "grid":
            raise ValueError(
                f"search {self.search.algorithm} samples configs from grid, which is empty: "
                "give grid a list or a distribution per key to search over"
            )
        sampled = [k for k, v in self.grid.items() if isinstance(v, dict)]
        if sampled and self.search.algorithm == "grid":
            raise ValueError(
                f"grid.{sampled[0]} is a distribution; distributions need "
                "`search: {algorithm: random, num_samples: N}` (or optuna)"
            )
        if self.scheduler and not (self.scheduler.metric or self.search.metric):
            raise ValueError("scheduler asha needs a metric and mode (on the scheduler or search)")
        if self.bundle is not None:
            self._check_bundle(self.bundle)
        if isinstance(self.seeds, Rounds):
            self._check_rounds(self.seeds, set_by_grid)
        return self

    def _check_rounds(self, rounds: Rounds, set_by_grid: list[str]) -> None:
        if self.search.algorithm != "grid":
            raise ValueError(
                "seeds added until decided (seeds.until) need search: grid; a search runs "
                "every config with a fixed list of seeds"
            )
        if rounds.until.by not in set_by_grid:
            raise ValueError(
                f"seeds.until.by is {rounds.until.by!r}, not a key the grid sweeps"
                f"{did_you_mean(rounds.until.by, set_by_grid)}; the comparison is between "
                "its levels"
            )

    def _check_bundle(self, bundle: Bundle) -> None:
        if self.search.algorithm != "grid":
            raise ValueError(
                f"under search {self.search.algorithm} each config's seeds already run as one "
                "bundle (fused when the experiment has a fused implementation), so that its "
                "searcher is told one value per config; remove bundle"
            )
        if self.scheduler is not None:
            raise ValueError(
                "bundle and scheduler do not go together: ASHA stops single trials early, "
                "and a bundle's members run in one Tune trial. Remove one of them"
            )
        unknown = [] if bundle.by == "*" else [k for k in bundle.by if k not in self.config_keys]
        if unknown:
            raise ValueError(
                f"bundle.by names {unknown[0]!r}, not a key of the trials' configs"
                f"{did_you_mean(unknown[0], self.config_keys)}; keys: {', '.join(self.config_keys)}"
            )

    @property
    def seed_list(self) -> list[int]:
        """Every seed a trial may run with (a sequential sweep's: up to its max)."""
        if isinstance(self.seeds, Rounds):
            return list(range(self.seeds.max))
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


def linked(values: Any) -> bool:
    """A grid entry whose items are mappings: each item sets several keys together."""
    return isinstance(values, list) and bool(values) and isinstance(values[0], dict)


def _check_distribution(key: str, dist: dict[str, Any]) -> None:
    if len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
        raise ValueError(
            f"grid.{key} is {dist!r}; a distribution is one of "
            f"{', '.join(DISTRIBUTIONS)} with a list, e.g. {{loguniform: [1e-4, 1e-1]}}"
        )
    kind, args = next(iter(dist.items()))
    if not isinstance(args, list) or not args or (kind != "choice" and len(args) != 2):
        raise ValueError(
            f"grid.{key}.{kind} takes [low, high]" + (" or a list" * (kind == "choice"))
        )


def load_spec(source: str | Path | dict[str, Any], overrides: list[str] = ()) -> SweepSpec:
    """Read a spec from a YAML file (or a dict), apply `key=value` overrides, validate."""
    where = str(source) if not isinstance(source, dict) else "spec"
    raw = _read_yaml(Path(source)) if not isinstance(source, dict) else dict(source)
    for override in overrides:
        _apply_override(raw, override)
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise InputError(_explain(exc, where)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: no such spec file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{path}:{line}: malformed YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a spec is a YAML mapping (name: ..., experiment: ...)")
    return raw


def _apply_override(raw: dict[str, Any], override: str) -> None:
    """`a.b=value`, the value parsed as YAML, put into `raw` as if the file said it.

    A key of one of the spec's models must be one of its fields (with a did-you-mean);
    inside a mapping of free keys (params, grid, inputs, report.directions, ...) any key
    may be set or added, and mappings on the way are made when the file lacks them. The
    result is then checked exactly as a file that says the same: the spec's models here,
    the experiment's declared parameters when the sweep is planned."""
    key, sep, text = override.partition("=")
    parts = key.split(".")
    if not sep or not all(parts):
        raise InputError(f"--set {override!r}: expected key=value, e.g. --set seeds=5")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    node: dict[str, Any] = raw
    model: type[BaseModel] | None = SweepSpec  # None: inside a mapping of free keys
    for depth, part in enumerate(parts):
        path = ".".join(parts[: depth + 1])
        if model is not None and part not in model.model_fields:
            raise InputError(
                f"--set {key}: no key {path!r} in the spec{did_you_mean(part, model.model_fields)}"
            )
        if depth == len(parts) - 1:
            node[part] = value
            return
        annotation = model.model_fields[part].annotation if model is not None else None
        sub_model = _model_in(annotation)
        child = node.get(part)
        if child is None and (model is None or sub_model is not None or _mapping(annotation)):
            child = {}
        elif isinstance(child, str) and sub_model is not None:
            child = _shorthand(child)
        if not isinstance(child, dict):
            now = "" if child is None else f" (it is {child!r})"
            raise InputError(
                f"--set {key}: {path} is not a mapping{now}; set it whole: --set {path}=..."
            )
        node[part] = child = dict(child)
        node, model = child, sub_model


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    """The types an annotation names: `Scheduler | None` -> (Scheduler, None)."""
    return getattr(annotation, "__args__", None) or (annotation,)


def _mapping(annotation: Any) -> bool:
    """Whether an annotation like `dict[str, Any]` or `dict[str, str] | None` takes a mapping."""
    return get_origin(annotation) is dict or any(
        get_origin(c) is dict for c in _alternatives(annotation)
    )


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation like `Search` or `Scheduler | None`."""
    for candidate in _alternatives(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _explain(exc: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid sweep spec"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("int", "list[")))
        if err["type"] == "extra_forbidden":
            parent = _model_at(err["loc"][:-1])
            hint = did_you_mean(str(err["loc"][-1]), parent.model_fields) if parent else ""
            lines.append(f"  {loc}: unknown key{hint}")
        elif err["type"] == "missing":
            lines.append(f"  {loc}: required key is missing")
        else:
            message = err["msg"].removeprefix("Value error, ")
            got = f" (got {err['input']!r})" if not isinstance(err["input"], dict) else ""
            prefix = "" if loc and message.startswith(loc) else f"{loc or 'spec'}: "
            lines.append(f"  {prefix}{message}{got}")
    return "\n".join(dict.fromkeys(lines))


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = SweepSpec
    for part in loc:
        if model is None or part not in model.model_fields:
            return None
        model = _model_in(model.model_fields[part].annotation)
    return model
