"""Typed experiment parameters: every shipped experiment declares its own; a spec's keys
and values are checked before anything is written; trials record the values they ran
with, defaults included; a user's experiment may declare them too, or not."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, cli, sweep, write_sweep

from orchestrator import InputError, load_spec
from orchestrator.params import check_spec, effective
from orchestrator.registry import available, resolve

SWEEPS = REPO / "experiments" / "sweeps"
QUICK = ["quickstart", "regression", "lm-sizes-quick", "tridecoding-quick", "unlearning-quick",
         "lmeval-quick"]  # fmt: skip


def test_every_shipped_experiment_declares_its_parameters():
    undeclared = [name for name in available() if resolve(name).params is None]
    assert undeclared == []


@pytest.mark.parametrize("name", QUICK)
def test_quick_specs_validate_and_a_misspelt_key_gets_a_suggestion(name: str):
    spec = load_spec(SWEEPS / f"{name}.yaml")
    params = resolve(spec.experiment).params
    check_spec(params, spec)
    open_ended = tuple(getattr(params, "extra_prefixes", ()))  # lmeval: any model_<key>
    key = next(k for k in spec.params if not k.startswith(open_ended))
    misspelt = key[:-1] + ("x" if key[-1] != "x" else "y")
    raw = yaml.safe_load((SWEEPS / f"{name}.yaml").read_text())
    raw["params"][misspelt] = raw["params"].pop(key)
    with pytest.raises(InputError) as err:
        check_spec(params, load_spec(raw))
    assert f"params.{misspelt}: experiment {spec.experiment} has no parameter" in str(err.value)
    assert f'did you mean "{key}"' in str(err.value)


def test_lmeval_takes_any_model_filter_and_nothing_else():
    params, base = resolve("lmeval").params, {"name": "e", "experiment": "lmeval"}
    check_spec(params, load_spec({**base, "params": {"model_n_layer": 4, "model_size": "x"}}))
    with pytest.raises(InputError, match='params.n_pair: .*did you mean "n_pairs".*model_<'):
        check_spec(params, load_spec({**base, "params": {"n_pair": 4}}))
    config = effective(params, {"model_n_layer": 4, "seed": 1})
    assert config["model_n_layer"] == 4 and config["n_pairs"] == 200


@pytest.mark.parametrize(
    ("experiment", "entry", "says"),
    [
        ("regression", {"params": {"lr": "0.1"}}, "params.lr: '0.1' is not allowed"),
        ("regression", {"grid": {"lr": [0.1]}, "params": {"steps": -5}}, "params.steps: -5"),
        ("reproducibility", {"grid": {"activation": ["relu", "tanh"]}}, "grid.activation: 'tanh'"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_before_any_file_exists(tmp_path, experiment, entry, says):
    """Exit 2 and the message; the first case through the installed console script, the
    others in this process."""
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"name": "b", "experiment": experiment,
                                                        **entry}))  # fmt: skip
    run = sweep if entry == {"params": {"lr": "0.1"}} else cli
    out = run("run", "spec.yaml", cwd=tmp_path)
    assert out.returncode == 2 and says in out.stderr, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # nothing written


@pytest.mark.parametrize(
    ("experiment", "entry", "says"),
    [
        ("reproducibility", {"params": {"activation": "relu", "beta": 0.5}}, "smelu only"),
        ("reproducibility", {"params": {"activation": "relu", "n_embd": 30, "n_head": 4}},
         "n_embd (30) is not a multiple of n_head (4)"),
        ("regression", {"grid": {"lr": {"uniform": [0, 1]}},
                        "search": {"algorithm": "random", "num_samples": 2}}, "grid.lr: 0.0"),
        ("regression", {"params": {"lr": 0.1}, "grid": {"steps": {"randint": [0, 3]}},
                        "search": {"algorithm": "random", "num_samples": 2}}, "grid.steps: 0 "),
        ("regression", {"params": {"steps": 10}}, "needs parameter 'lr'"),
        ("unlearning", {"params": {"forget_class": 3, "forget_fraction": 0.1}}, "exactly one"),
    ],
)  # fmt: skip
def test_every_value_a_spec_can_give_is_checked(experiment, entry, says):
    spec = load_spec({"name": "b", "experiment": experiment, **entry})
    with pytest.raises(InputError, match=re.escape(says)):
        check_spec(resolve(experiment).params, spec)


def test_effective_configs_hold_defaults_and_changed_defaults_change_ids():
    spec = load_spec({"name": "s", "experiment": "regression", "grid": {"lr": [0.1]}})
    params = resolve("regression").params
    config = effective(params, {"lr": 0.1, "seed": 0})
    assert config == {"lr": 0.1, "optimizer": "sgd", "steps": 100, "batch_size": 32,
                      "features": 16, "samples": 512, "noise": 0.5, "seed": 0}  # fmt: skip
    assert effective(None, {"lr": 0.1, "seed": 0}) == {"lr": 0.1, "seed": 0}

    class Older(params):  # the same experiment as it was, with another default
        steps: int = 50

    from orchestrator.runner import plan

    now, before = plan(spec, Path.cwd(), params), plan(spec, Path.cwd(), Older)
    assert set(now.configs).isdisjoint(before.configs)


MODULE = """
    from pydantic import BaseModel, Field

    from orchestrator import parameters


    class Params(BaseModel):
        width: int = Field(4, ge=1, description="layer width")
        rate: float = Field(gt=0, description="a rate")


    @parameters(Params)
    def declared(config, trial):
        trial.report(step=0, loss=config["rate"] * config["width"])
        return {"loss": config["rate"] * config["width"]}


    def undeclared(config, trial):
        return {"loss": float(config["rate"])}
"""


def test_a_user_experiment_that_declares_parameters_is_checked_and_records_defaults(
    tmp_path, ray_instance
):
    write_sweep(tmp_path, "mine", MODULE, name="u", experiment="mine:declared",
                params={"widht": 8}, grid={"rate": [0.5]})  # fmt: skip
    out = cli("run", "spec.yaml", cwd=tmp_path)
    assert out.returncode == 2 and "params.widht: experiment mine:declared has no parameter" in (
        out.stderr
    )
    assert 'did you mean "width"' in out.stderr and not (tmp_path / "results").exists()
    write_sweep(tmp_path, "mine", MODULE, name="u", experiment="mine:declared",
                grid={"rate": [0.5, 1.0]})  # fmt: skip
    plan = cli("run", "spec.yaml", "--dry-run", cwd=tmp_path).stdout
    assert "every trial: width=4" in plan and "parameters: unchecked" not in plan
    out = cli("run", "spec.yaml", "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    trials = pd.read_parquet(tmp_path / "results" / "u" / "trials").sort_values("rate")
    assert trials["width"].tolist() == [4, 4] and trials["loss"].tolist() == [2.0, 4.0]
    assert cli("report", "results/u", "--out", "report", cwd=tmp_path).returncode == 0
    about = (tmp_path / "report" / "report.md").read_text().split("## About this report")[1]
    assert "Parameters the same in every successful trial, defaults included: width=4." in about


def test_an_undeclared_experiment_runs_as_before_and_dry_run_says_unchecked(tmp_path, ray_instance):
    write_sweep(tmp_path, "mine", MODULE, name="u", experiment="mine:undeclared",
                grid={"rate": [1, 2]}, params={"anything": "goes"})  # fmt: skip
    out = cli("run", "spec.yaml", "--dry-run", cwd=tmp_path)
    assert out.returncode == 0 and "parameters: unchecked" in out.stdout
    out = cli("run", "spec.yaml", "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    trials = pd.read_parquet(tmp_path / "results" / "u" / "trials")
    assert sorted(trials.columns.intersection(["rate", "anything", "width"])) == [
        "anything",
        "rate",
    ]


def test_a_declaration_is_a_pydantic_model_that_leaves_the_seed_to_raysweep():
    from pydantic import BaseModel

    from orchestrator import parameters

    class WithSeed(BaseModel):
        seed: int = 0

    with pytest.raises(TypeError, match="seed is set by raysweep"):
        parameters(WithSeed)
    with pytest.raises(TypeError, match="pydantic model class"):
        parameters({"lr": float})


def test_parameters_are_described_with_their_types_bounds_and_defaults():
    from typing import Literal, Optional

    from pydantic import BaseModel, Field

    from orchestrator.params import describe

    class P(BaseModel):
        sizes: list[int] = Field([1, 2], description="widths")
        kind: Literal["a", "b"] = "a"
        rate: Optional[float] = Field(None, gt=0, le=1)  # noqa: UP045 - the old spelling too
        steps: int = Field(ge=1)

    rows = {row["name"]: (row["type"], row["default"], row["help"]) for row in describe(P)}
    assert rows == {"sizes": ("list[int]", "[1, 2]", "widths"), "kind": ("a|b", "'a'", ""),
                    "rate": ("float or None > 0 <= 1", "None", ""),
                    "steps": ("int >= 1", "(required)", "")}  # fmt: skip


def test_sweep_experiments_name_lists_the_parameters(tmp_path):
    out = cli("experiments", "regression", cwd=tmp_path)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["name", "type", "default"]
    assert any(line.split()[:4] == ["lr", "float", ">", "0"] and "(required)" in line
               for line in lines)  # fmt: skip
    assert any(line.startswith("optimizer") and "sgd|adam" in line for line in lines)


LEGACY = """
    def declared(config, trial):  # as it was before it declared its parameters
        width = config.get("width", 4)
        return {"loss": config["rate"] * width}
"""


def test_a_folder_from_before_typed_parameters_opens_reports_and_resumes(tmp_path, ray_instance):
    """Written while the experiment declared nothing (as every sweep before typed
    parameters was), then run again once it declares them: the trial whose spec set every
    parameter keeps its id and stays done; the one that relied on a default runs again
    under an id that includes it; the old row stays; status and report read them all."""
    spec = {"name": "u", "experiment": "mine:declared", "grid": {"cell": [
        {"rate": 0.5, "width": 4}, {"rate": 1.0}]}}  # fmt: skip
    write_sweep(tmp_path, "mine", LEGACY, **spec)
    assert cli("run", "spec.yaml", "-q", cwd=tmp_path).returncode == 0
    folder = tmp_path / "results" / "u"
    before = pd.read_parquet(folder / "trials")
    write_sweep(tmp_path, "mine", MODULE, **spec)
    out = cli("run", "spec.yaml", "-q", cwd=tmp_path)
    assert out.returncode == 0 and "2 trials: 1 already done, ran 1 attempts" in out.stdout
    trials = pd.read_parquet(folder / "trials")
    assert len(trials) == 3 and set(before["trial_id"]) < set(trials["trial_id"])
    rerun = trials[~trials["trial_id"].isin(before["trial_id"])]
    assert rerun[["rate", "width"]].values.tolist() == [[1.0, 4]]  # the default, recorded
    status = cli("status", "results/u", cwd=tmp_path)
    assert status.returncode == 0
    assert all(tid in status.stdout for tid in trials["trial_id"])  # old rows listed too
    assert cli("report", "results/u", cwd=tmp_path).returncode == 0
    assert (folder / "report" / "report.html").is_file()
    again = cli("run", "spec.yaml", "--dry-run", cwd=tmp_path).stdout
    assert "2 in all, 2 already done, 0 to run" in again


def _regression_spec(folder: Path, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": "r", "experiment": "regression", "params": {"lr": 0.1, "steps": 5}}
    (folder / "spec.yaml").write_text(yaml.safe_dump({**spec, **fields}))
    return folder / "spec.yaml"


def test_set_adds_declared_parameters_and_a_grid_the_file_lacks(tmp_path, monkeypatch):
    """`samples` is declared by the experiment and absent from the file, which has no grid:
    --set puts both in every trial's config, the same trials as a file that says so."""
    from orchestrator.runner import run_sweep

    monkeypatch.chdir(tmp_path)
    overrides = ["params.samples=64", "grid.noise=[0.1, 0.9]"]
    by_set = run_sweep(_regression_spec(tmp_path / "set"), overrides=overrides, dry_run=True)
    configs = sorted(by_set.configs.values(), key=lambda c: c["noise"])
    assert [(c["noise"], c["samples"], c["features"]) for c in configs] == [
        (0.1, 64, 16),
        (0.9, 64, 16),
    ]  # features: the declared default
    in_file = _regression_spec(tmp_path / "file", params={"lr": 0.1, "steps": 5, "samples": 64},
                               grid={"noise": [0.1, 0.9]})  # fmt: skip
    assert set(run_sweep(in_file, dry_run=True).configs) == set(by_set.configs)
    out = cli("run", "set/spec.yaml", "--dry-run", *(f"--set={o}" for o in overrides),
              cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "trials: 2 in all" in out.stdout and "samples=64" in out.stdout
    assert "0.9" in out.stdout.splitlines()[-1]  # a row per trial, its noise in it
    assert not (tmp_path / "results").exists()


def test_a_parameter_set_on_the_command_line_reaches_the_trials(tmp_path, ray_instance):
    write_sweep(tmp_path, "mine", MODULE, name="u", experiment="mine:declared")  # no params
    out = cli("run", "spec.yaml", "-q", "--set", "params.width=8", "--set", "grid.rate=[0.5, 1.0]",
              cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    trials = pd.read_parquet(tmp_path / "results" / "u" / "trials").sort_values("rate")
    assert trials["width"].tolist() == [8, 8] and trials["loss"].tolist() == [4.0, 8.0]


@pytest.mark.parametrize(
    ("params", "override", "says"),
    [
        ({"dropout": 0.1}, "params.dropout=0.1", "params.dropout: experiment regression has no "
                                                 "parameter 'dropout'"),
        ({"stepz": 5}, "params.stepz=5", 'did you mean "steps"'),
        ({"samples": "many"}, "params.samples=many", "params.samples: 'many' is not allowed"),
        ({"samples": 2}, "params.samples=2", "params.samples: 2 is not allowed"),
        ({"samples": 6.5}, "params.samples=6.5", "params.samples: 6.5 is not allowed"),
        ({"lr": "1e-3"}, "params.lr=1e-3", "params.lr: '1e-3' is not allowed"),  # YAML: text
    ],
)  # fmt: skip
def test_set_is_refused_exactly_as_the_same_key_in_the_file(tmp_path, params, override, says):
    """Exit 2, the same message word for word, nothing written."""
    in_file = _regression_spec(tmp_path / "file", params={"lr": 0.1, "steps": 5, **params})
    by_set = _regression_spec(tmp_path / "set")
    file_out = cli("run", "spec.yaml", cwd=in_file.parent)
    set_out = cli("run", "spec.yaml", "--set", override, cwd=by_set.parent)
    assert file_out.returncode == set_out.returncode == 2, set_out.stderr
    assert says in set_out.stderr and set_out.stderr == file_out.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert written == ["file", "file/spec.yaml", "set", "set/spec.yaml"]
