"""Experiments by name: the ones installed packages declare, the ones registered in
this process, or any function by import path `package.module:function`.

Installed packages declare experiments as entry points in the group
`raysweep.experiments` (see pyproject.toml); `register` adds one at run time. Each
resolves to its `Experiment`: the function and what its declaration adds
(orchestrator/declaration.py).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from orchestrator.declaration import Experiment, declaration
from orchestrator.errors import InputError, did_you_mean

ENTRY_POINT_GROUP = "raysweep.experiments"
Fn = Callable[..., Any]

_registered: dict[str, Fn] = {}


def register(name: str, fn: Fn | None = None) -> Any:
    """Register `fn` under `name`; usable as `@register("name")` too."""

    def add(f: Fn) -> Fn:
        _registered[name] = f
        return f

    return add(fn) if fn is not None else add


def available() -> dict[str, str]:
    """Every experiment name known here, with where it lives."""
    names = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    names.update({n: f"{f.__module__}:{f.__qualname__}" for n, f in _registered.items()})
    return dict(sorted(names.items()))


def resolve(experiment: str, search_dirs: Iterable[Path] = ()) -> Experiment:
    """The experiment a name or import path refers to, as declared.

    `search_dirs` (the spec's folder, the working directory) are put on sys.path
    so a user's own module next to their spec imports. Such a module is pickled
    by value, so Ray workers on any node can run it without having the file.
    """
    if experiment in _registered:
        return declaration(_registered[experiment])
    if ":" not in experiment:
        known = available()
        if experiment not in known:
            listing = ", ".join(known) or "none installed"
            raise InputError(
                f'unknown experiment "{experiment}"{did_you_mean(experiment, known)}; '
                f"known: {listing}. Or give an import path package.module:function"
            )
        experiment = known[experiment]
    return declaration(_import(experiment, [Path(d).resolve() for d in search_dirs]))


def _import(path: str, search_dirs: list[Path]) -> Fn:
    module_name, _, attr = path.partition(":")
    for folder in reversed(search_dirs):
        if str(folder) in sys.path:
            sys.path.remove(str(folder))
        sys.path.insert(0, str(folder))
    _forget_copy_from_elsewhere(module_name, search_dirs)
    try:
        module = importlib.import_module(module_name)
        if _is_user_file(module, search_dirs):
            module = importlib.reload(module)  # pick up edits made since the last sweep
    except ModuleNotFoundError as exc:
        raise InputError(
            f'experiment "{path}": cannot import module "{exc.name}" '
            f"(searched the spec's folder, the working directory and installed packages)"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        choices = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise InputError(
            f'experiment "{path}": module {module_name} has no function "{attr}"'
            f"{did_you_mean(attr, choices)}"
        )
    if _is_user_file(module, search_dirs):
        import ray.cloudpickle

        ray.cloudpickle.register_pickle_by_value(module)
    return fn


def _forget_copy_from_elsewhere(module_name: str, search_dirs: list[Path]) -> None:
    """A module of this name that this process loaded from another folder (a notebook or
    test that ran a spec elsewhere) is dropped, so the one beside this spec imports."""
    top = module_name.split(".")[0]
    loaded = sys.modules.get(top)
    here = [d for d in search_dirs if (d / f"{top}.py").is_file() or (d / top).is_dir()]
    if loaded is None or not here or _is_user_file(loaded, here[:1]):
        return
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def _is_user_file(module: Any, search_dirs: list[Path]) -> bool:
    file = getattr(module, "__file__", None)
    if not file or "site-packages" in file:
        return False
    return any(Path(file).resolve().is_relative_to(d) for d in search_dirs)
