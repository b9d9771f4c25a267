"""An experiment's contract in one place: the function run per trial and what goes with it.

    @experiment(params=Params, fused=train_many, varies=["seed"], after_sweep=write_pairs)
    def train(config: dict[str, Any], trial: Trial) -> dict[str, float]: ...

The decorator checks the declaration when the module is imported and returns the function
itself, the declaration attached: `train(config, trial)` stays a plain function that tests
and notebooks call, and pickles as before. `declaration(fn)` gives any function's
`Experiment`: the attached one, else one built from the attributes that declared the same
things before (`@parameters`, `fn.fused`, `fn.fused.varies`, `fn.after_sweep`,
`fn.report`, `fn.report_sections`), so experiments written that way run unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from analysis.settings import ReportSettings
from orchestrator.context import Trial
from orchestrator.params import ATTRIBUTE as PARAMS_ATTRIBUTE
from orchestrator.params import check_model

if TYPE_CHECKING:
    from analysis.sections import Hook

Config = dict[str, Any]
Metrics = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTE = "__raysweep_experiment__"
# The attributes that declare an experiment without the decorator, by the field each sets
# (`varies` is an attribute of the fused function).
_OLD_STYLE = {
    "params": PARAMS_ATTRIBUTE,
    "fused": "fused",
    "after_sweep": "after_sweep",
    "report": "report",
    "sections": "report_sections",
}


@dataclass(frozen=True)
class Experiment:
    """What a sweep runs, and what goes with it (docs/experiments.md, "The declaration")."""

    fn: Callable[[Config, Trial], Metrics | None]  # one trial: fn(config, trial)
    params: type[BaseModel] | None = None  # what a spec may set; checked before a run
    fused: Callable[[list[Config], list[Trial]], list[Metrics]] | None = None  # a bundle at once
    varies: frozenset[str] | None = None  # config keys a fused bundle's members may differ in
    report: ReportSettings | None = None  # `sweep report` defaults
    sections: tuple[Hook, ...] = ()  # report sections: (sweep, settings) -> [Section, ...]
    after_sweep: Callable[[str], Any] | None = None  # run once with the sweep folder


def experiment(
    *,
    params: type[BaseModel] | None = None,
    fused: Callable[[list[Config], list[Trial]], list[Metrics]] | None = None,
    varies: Iterable[str] | None = None,
    report: ReportSettings | None = None,
    sections: Iterable[Hook] = (),
    after_sweep: Callable[[str], Any] | None = None,
) -> Callable[[F], F]:
    """Declare an experiment: `@experiment(params=Params, ...)` above its function. A bad
    declaration is a TypeError when the module is imported."""
    fields = {
        "params": params,
        "fused": fused,
        "varies": varies,
        "report": report,
        "sections": sections,
        "after_sweep": after_sweep,
    }

    def attach(fn: F) -> F:
        setattr(fn, _ATTRIBUTE, _checked(fn, **fields))
        return fn

    return attach


def declaration(fn: Callable[..., Any]) -> Experiment:
    """The declaration of `fn`: the decorator's, else the one its attributes make."""
    declared: Experiment | None = getattr(fn, _ATTRIBUTE, None)
    if declared is None:
        return _checked(fn, **_old_style(fn))
    if stray := list(_old_style(fn)):
        raise TypeError(
            f"experiment {_name(fn)}: declared with @experiment(...) and with older "
            f"attributes too ({', '.join(stray)}), which it would ignore; declare them in "
            "@experiment(...)"
        )
    # a wrapper made with functools.wraps carries the declaration along: it runs itself
    return declared if declared.fn is fn else dataclasses.replace(declared, fn=fn)


def _old_style(fn: Callable[..., Any]) -> dict[str, Any]:
    """The fields that attributes of `fn` (and `fn.fused.varies`) declare."""
    found = {field: getattr(fn, name) for field, name in _OLD_STYLE.items() if hasattr(fn, name)}
    if hasattr(found.get("fused"), "varies"):
        found["varies"] = found["fused"].varies
    return found


def _checked(
    fn: Callable[..., Any],
    params: Any = None,
    fused: Any = None,
    varies: Any = None,
    report: Any = None,
    sections: Any = (),
    after_sweep: Any = None,
) -> Experiment:
    """The Experiment these values declare, or a TypeError naming the first bad one."""
    name = _name(fn)
    for what, value in (("the experiment", fn), ("fused", fused), ("after_sweep", after_sweep)):
        if value is not None and not callable(value):
            raise TypeError(f"experiment {name}: {what} must be a function, not {value!r}")
    if params is not None:
        check_model(params, f"experiment {name}: params")
    if report is not None and not isinstance(report, ReportSettings):
        raise TypeError(
            f"experiment {name}: report takes analysis.ReportSettings(...), not {report!r}"
        )
    return Experiment(
        fn, params, fused, _keys(name, varies, fused), report, _hooks(name, sections), after_sweep
    )


def _keys(name: str, varies: Any, fused: Any) -> frozenset[str] | None:
    if varies is None:
        return None
    if fused is None:
        raise TypeError(
            f"experiment {name}: varies names what the members of a fused bundle may differ "
            "in; it needs fused"
        )
    if not isinstance(varies, list | tuple | set | frozenset) or not all(
        isinstance(key, str) for key in varies
    ):
        raise TypeError(
            f"experiment {name}: varies takes a list of config keys, like ['seed'], not {varies!r}"
        )
    return frozenset(varies)


def _hooks(name: str, sections: Any) -> tuple[Hook, ...]:
    if not isinstance(sections, list | tuple) or not all(map(callable, sections)):
        raise TypeError(
            f"experiment {name}: sections takes a list of functions (sweep, settings) -> "
            f"[Section, ...], not {sections!r}"
        )
    return tuple(sections)


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", repr(fn))
