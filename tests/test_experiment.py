"""An experiment's declaration (orchestrator/declaration.py): `@experiment(...)` read back
through `resolve`, the older attribute style giving the same `Experiment`, bad declarations
refused when the module is imported, and a real sweep running what a declaration says."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_sweep
from pydantic import BaseModel, Field

from analysis import ReportSettings
from orchestrator import InputError, run_sweep
from orchestrator.declaration import Experiment, declaration, experiment
from orchestrator.registry import resolve

# An experiment declared with the decorator (`new`); BOTH declares it with attributes too.
NEW = """
from pathlib import Path

from pydantic import BaseModel, Field

from analysis import ReportSettings
from orchestrator import Trial, experiment


class Params(BaseModel):
    x: float = Field(1.0, description="a number")


def together(configs, trials):
    for trial in trials:
        trial.report(step=0, value=float(trial.seed))
    return [{"value": float(trial.seed) + config["x"], "fused": 1.0}
            for config, trial in zip(configs, trials)]


def section(sweep, settings):
    return []


def pairs(sweep_folder):
    (Path(sweep_folder) / "after.txt").write_text("done")
    return "wrote after.txt"


REPORT = ReportSettings(directions={"value": "lower"})


@experiment(params=Params, fused=together, varies=["seed"], report=REPORT,
            sections=[section], after_sweep=pairs)
def new(config: dict, trial: Trial) -> dict:
    return {"value": float(trial.seed) + config["x"], "fused": 0.0}
"""
BOTH = (
    NEW
    + """
from orchestrator import parameters


@parameters(Params)
def old(config, trial):
    return {"value": float(trial.seed) + config["x"], "fused": 0.0}


old.fused = together
together.varies = ("seed",)
old.after_sweep = pairs
old.report = REPORT
old.report_sections = [section]
"""
)


def _module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(source))


def test_the_decorator_declares_every_field_read_back_through_resolve(tmp_path):
    _module(tmp_path, "declared_new", BOTH)
    declared = resolve("declared_new:new", [tmp_path])
    module = sys.modules["declared_new"]
    assert declared == Experiment(
        fn=module.new,
        params=module.Params,
        fused=module.together,
        varies=frozenset({"seed"}),
        report=module.REPORT,
        sections=(module.section,),
        after_sweep=module.pairs,
    )
    # the function stays itself: callable as it was written
    assert module.new({"x": 2.0}, type("T", (), {"seed": 1})()) == {"value": 3.0, "fused": 0.0}


def test_the_older_attribute_style_declares_the_same_experiment(tmp_path):
    _module(tmp_path, "declared_both", BOTH)
    old = resolve("declared_both:old", [tmp_path])
    new = declaration(sys.modules["declared_both"].new)  # resolve again would reload it
    assert old.fn is not new.fn and dataclasses.replace(old, fn=new.fn) == new


def test_a_plain_function_declares_nothing():
    def plain(config, trial):
        return {}

    assert declaration(plain) == Experiment(plain)


class Params(BaseModel):
    lr: float = Field(0.1, gt=0)


class Seeded(BaseModel):
    seed: int = 0


def _hook(sweep, settings):
    return []


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"params": dict}, "params takes a pydantic model class"),
        ({"params": Seeded}, "params: Seeded: seed is set by raysweep"),
        ({"fused": "train_many"}, "fused must be a function, not 'train_many'"),
        ({"fused": _hook, "varies": "seed"}, "varies takes a list of config keys"),
        ({"fused": _hook, "varies": [1]}, "varies takes a list of config keys"),
        ({"varies": ["seed"]}, "varies names what the members of a fused bundle may differ in"),
        ({"report": {"metrics": ["loss"]}}, "report takes analysis.ReportSettings"),
        ({"sections": _hook}, "sections takes a list of functions"),
        ({"sections": [_hook, "table"]}, "sections takes a list of functions"),
        ({"after_sweep": 3}, "after_sweep must be a function, not 3"),
    ],
)
def test_a_bad_declaration_is_refused_where_it_is_written(fields, says):
    with pytest.raises(TypeError, match=f"experiment .*train: {says}"):

        @experiment(**fields)
        def train(config, trial):
            return {}


def test_attributes_beside_the_decorator_are_refused_not_ignored():
    @experiment(params=Params)
    def train(config, trial):
        return {}

    train.after_sweep, train.report_sections = _hook, [_hook]
    with pytest.raises(TypeError, match=r"older attributes too \(after_sweep, sections\)"):
        declaration(train)


def test_a_wrapper_runs_itself_with_the_declaration_it_carries():
    import functools

    @experiment(params=Params, report=ReportSettings(directions={"loss": "lower"}))
    def train(config, trial):
        return {"loss": 1.0}

    @functools.wraps(train)
    def logged(config, trial):
        return {**train(config, trial), "logged": 1.0}

    assert declaration(logged) == dataclasses.replace(declaration(train), fn=logged)


def test_a_sweep_runs_the_declared_fused_code_and_after_sweep(tmp_path, ray_instance):
    """Each bundle of 3 seeds through `together` (never `new` alone), the declared default
    of x in every config, then `pairs` with the sweep folder."""
    spec = write_sweep(
        tmp_path, "declared_run", NEW, name="d", experiment="declared_run:new",
        storage=str(tmp_path / "results"), seeds=3, grid={"x": [1.0, 2.0]}, bundle={"size": 3},
    )  # fmt: skip
    result = run_sweep(spec, progress=None)
    trials = pd.read_parquet(tmp_path / "results" / "d" / "trials")
    assert len(trials) == 6 and (trials["status"] == "ok").all()
    assert (trials["fused"] == 1.0).all() and trials["bundle"].nunique() == 2
    assert (trials["value"] == trials["seed"] + trials["x"]).all()
    assert result.after_sweep == "wrote after.txt"
    assert (tmp_path / "results" / "d" / "after.txt").read_text() == "done"


def test_bundles_outside_what_varies_allows_are_refused_before_anything_runs(tmp_path):
    spec = write_sweep(
        tmp_path, "declared_refused", NEW, name="r", experiment="declared_refused:new",
        storage=str(tmp_path / "results"), seeds=2, grid={"x": [1.0, 2.0]},
        bundle={"size": 4, "by": "*"},
    )  # fmt: skip
    with pytest.raises(InputError, match="may differ only in seed; .* differ in x"):
        run_sweep(spec, progress=None)
    assert not (tmp_path / "results").exists()
