"""Typed experiment parameters: what an experiment accepts, checked before a sweep runs.

An experiment declares its parameters with a pydantic model beside its function,

    class Params(BaseModel):
        lr: float = Field(gt=0, description="learning rate")
        steps: int = Field(100, ge=1, description="optimizer steps")

    @experiment(params=Params)
    def train(config, trial): ...

and then every key of the spec's `params:` and `grid:` (and every search distribution)
is checked against it before anything is written: an unknown key, a value of the wrong
type (strictly: "0.1" is no float) or out of range stops the sweep with exit 2. (A model
with `extra="allow"` also takes the keys that start with one of its `extra_prefixes`, a
ClassVar: lmeval's `model_<key>` filters.) Each trial's config holds the effective
values, defaults included, so the trials table says what every trial ran with, and a
changed default changes the trial ids. An experiment that declares nothing gets its
configs as written, unchecked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from orchestrator.errors import InputError, did_you_mean
from orchestrator.spec import SweepSpec, linked
from orchestrator.trials import expand

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__raysweep_params__"  # where `@parameters` puts the model on the function
OWNED = ("seed",)  # keys the orchestrator sets itself


def check_model(model: Any, where: str) -> type[BaseModel]:
    """`model` if it can declare an experiment's parameters, else a TypeError that names
    `where` it was given (`@parameters`, `@experiment(params=...)`)."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{where} takes a pydantic model class (class P(BaseModel): ...)")
    clash = [name for name in model.model_fields if name in OWNED]
    if clash:
        raise TypeError(f"{where}: {model.__name__}: {clash[0]} is set by raysweep; leave it out")
    return model


def parameters(model: type[BaseModel]) -> Callable[[F], F]:
    """Declare an experiment's parameters: `@parameters(Params)` above its function (the
    older style; `@experiment(params=Params)` declares them with the rest)."""
    check_model(model, "@parameters")

    def attach(fn: F) -> F:
        setattr(fn, ATTRIBUTE, model)
        return fn

    return attach


def effective(model: type[BaseModel] | None, config: dict[str, Any]) -> dict[str, Any]:
    """The config a trial runs with: declared defaults filled in, the seed kept."""
    if model is None:
        return dict(config)
    owned = {k: config[k] for k in OWNED if k in config}
    values = {k: v for k, v in config.items() if k not in OWNED}
    return {**model.model_validate(values, strict=True).model_dump(), **owned}


def check_spec(model: type[BaseModel], spec: SweepSpec) -> list[dict[str, Any]]:
    """Raise InputError, naming the spec key, the value and what is allowed, unless every
    key the spec sets is a parameter and every value it can give one is valid: every
    trial's config of a grid sweep; each choice and each end of each range of a search.
    Returns a grid sweep's configs as its trials run them, defaults filled in (none for a
    search, whose configs Tune samples)."""
    grid = spec.search.algorithm == "grid"
    checked = _check(
        model, spec.experiment, _locations(spec), expand(spec) if grid else _corners(spec)
    )
    return checked if grid else []


def _locations(spec: SweepSpec) -> dict[str, str]:
    """Each config key the spec sets, with where: `params.steps`, `grid.activation`."""
    where = {key: f"params.{key}" for key in spec.params}
    for label, values in spec.grid.items():
        keys = {k for item in values for k in item} if linked(values) else {label}
        where.update((key, f"grid.{label}") for key in keys)
    return where


def _corners(spec: SweepSpec) -> list[dict[str, Any]]:
    """Configs of a search space that, all valid, make every sample valid: each key's
    choices and range ends in turn, the other keys at their first candidate."""
    candidates = {key: _candidates(values) for key, values in spec.grid.items()}
    base = {**spec.params, **{key: found[0] for key, found in candidates.items()}}
    return [{**base, key: value} for key, found in candidates.items() for value in found]


def _candidates(values: Any) -> list[Any]:
    if isinstance(values, list):
        return values
    kind, args = next(iter(values.items()))
    if kind == "choice":
        return args
    if kind == "randint":  # Tune's randint excludes the upper end
        return [int(args[0]), int(args[1]) - 1]
    return [float(args[0]), float(args[1])]  # uniform and loguniform sample floats


def _check(
    model: type[BaseModel],
    experiment: str,
    where: dict[str, str],
    configs: Iterable[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The `configs` with defaults filled in; InputError naming the first unknown key or
    bad value. `where` maps each key to the spec location that sets it."""
    fields = model.model_fields
    prefixes = getattr(model, "extra_prefixes", ())  # keys a model takes beyond its fields
    known = [*fields, *(f"{prefix}<anything>" for prefix in prefixes)]
    for key, location in where.items():
        if key not in fields and key not in OWNED and not key.startswith(tuple(prefixes)):
            raise InputError(
                f"{location}: experiment {experiment} has no parameter {key!r}"
                f"{did_you_mean(key, fields)}; its parameters: {', '.join(known)} "
                f"(sweep experiments {experiment} describes them)"
            )
    checked = []
    for config in configs:
        try:
            checked.append(effective(model, config))
        except ValidationError as exc:
            values = {k: v for k, v in config.items() if k not in OWNED}
            raise InputError(_bad_value(exc, experiment, where, values, fields)) from None
    return checked


def describe(model: type[BaseModel]) -> list[dict[str, str]]:
    """One row per parameter: name, type, default, help (for `sweep experiments NAME`)."""
    return [
        {
            "name": name,
            "type": " ".join([_type_name(info.annotation), *map(_bound, info.metadata)]),
            "default": "(required)" if info.is_required() else repr(info.get_default()),
            "help": info.description or "",
        }
        for name, info in model.model_fields.items()
    ]


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "|".join(map(str, get_args(annotation)))
    if origin in (Union, UnionType):  # `float | None`
        return " or ".join(_type_name(arg) for arg in get_args(annotation))
    if origin is not None:  # list[int], dict[str, float]
        return str(annotation).replace("typing.", "")
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _bound(constraint: Any) -> str:
    for attribute, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if getattr(constraint, attribute, None) is not None:
            return f"{sign} {getattr(constraint, attribute)}"
    return str(constraint)


def _bad_value(
    exc: ValidationError,
    experiment: str,
    where: dict[str, str],
    values: dict[str, Any],
    fields: dict[str, Any],
) -> str:
    errors = exc.errors()  # a value the spec gave first, then a parameter it left out
    error = next((e for e in errors if e["type"] != "missing"), errors[0])
    key = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "missing":
        return (
            f"experiment {experiment} needs parameter {key!r} and the spec does not set it: "
            f"add it under params: or grid: ({fields[key].description or 'no description'})"
        )
    if not key:  # the model's own check of several parameters together
        given = {k: v for k, v in values.items() if k in where}
        return f"experiment {experiment} refuses the config {given}: {error['msg']}"
    shown = values.get(key)
    return (
        f"{where.get(key, key)}: {shown!r} is not allowed for parameter {key!r} of "
        f"experiment {experiment}: {error['msg']}"
        + (f" ({fields[key].description})" if key in fields and fields[key].description else "")
    )
