"""Spec validation, overrides, expansion and trial ids: no Ray needed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from orchestrator import InputError, expand, load_spec, trial_id

BASE = {"name": "s", "experiment": "trivial"}


def spec(**fields):
    return load_spec({**BASE, **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"seed": 3}, 'seed: unknown key (did you mean "seeds"?)'),
        ({"grid": {"x": [1]}, "parms": {}}, 'did you mean "params"'),
        ({"resources": {"gpus": 1}}, 'resources.gpus: unknown key (did you mean "gpu"?)'),
        ({"seeds": -1}, "seeds is a count of at least 1"),
        ({"seeds": 2.5}, "seeds is a count of at least 1"),
        ({"seeds": [1, -2]}, "non-negative integers"),
        ({"seeds": [1, 1]}, "seeds repeat"),
        ({"seeds": True}, "seeds is a count"),
        ({"grid": {"x": []}}, "grid.x is an empty list"),
        ({"grid": {"x": 3}}, "a grid value is a list"),
        ({"resources": {"gpu": -1}}, "resources.gpu"),
        ({"resources": {"gpu": 1.5}}, "fraction of one GPU or a whole number"),
        ({"retries": "two"}, "retries"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"search": "random"}, "needs num_samples"),
        ({"search": {"algorithm": "optuna", "num_samples": 4}}, "needs metric and mode"),
        ({"search": "bayes"}, "search.algorithm"),
        ({"grid": {}, "search": {"algorithm": "random", "num_samples": 2}}, "which is empty"),
        ({"search": {"algorithm": "random", "num_samples": 2, "aggregate": "worst"}}, "needs mode"),
        ({"search": {"algorithm": "random", "num_samples": 2, "aggregate": "max"}}, "aggregate"),
        ({"grid": {"lr": {"uniform": [0, 1]}}}, "distributions need"),
        ({"grid": {"lr": {"normal": [0, 1]}}}, "a distribution is one of"),
        ({"params": {"seed": 1}}, "seed is a dimension of its own"),
        ({"params": {"status": 1}}, "names a column of the trials table"),
        ({"grid": {"a": [1]}, "params": {"a": 2}}, "keys in both grid and params"),
        ({"name": "a b"}, "the name is the sweep's folder"),
        ({"scheduler": "asha"}, "needs a metric"),
        ({"limits": {"trial_time": "soon"}}, "limits.trial_time: 'soon' is no duration"),
        ({"limits": {"report_gap": 0}}, "limits.report_gap: 0: a duration is more than zero"),
        ({"limits": {"start_time": "5 days"}}, "give seconds (90) or 90s, 10m, 2h"),
        ({"limits": {"trial_tme": 5}}, 'did you mean "trial_time"'),
    ],
)
def test_bad_specs_say_what_and_where(fields, message):
    with pytest.raises(InputError) as err:
        spec(**fields)
    assert message in str(err.value)


def test_limits_are_seconds_or_text_with_a_unit():
    limits = spec(limits={"trial_time": "2h", "report_gap": "1.5m", "start_time": 90}).limits
    assert (limits.trial_time, limits.report_gap, limits.start_time) == (7200, 90, 90)
    default = spec().limits
    assert (default.trial_time, default.report_gap, default.start_time) == (None, None, 300)
    assert spec(limits={"start_time": None}).limits.start_time is None  # never stop waiting


def test_missing_keys_are_named():
    with pytest.raises(InputError, match="name: required key is missing"):
        load_spec({"experiment": "trivial"})


def test_malformed_yaml_reports_the_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: s\nexperiment: trivial\ngrid: {x: [1, 2\n")
    with pytest.raises(InputError, match=r"bad.yaml: line \d+, column \d+: malformed YAML"):
        load_spec(path)


def test_yaml_is_loaded_safely(tmp_path: Path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hi']\nexperiment: trivial\n")
    with pytest.raises(InputError, match="malformed YAML"):
        load_spec(path)


def test_a_spec_that_is_not_a_mapping(tmp_path: Path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(InputError, match="a spec is a YAML mapping"):
        load_spec(path)


def test_overrides_set_fields_and_nested_keys():
    s = load_spec(
        {**BASE, "grid": {"x": [1, 2]}, "params": {"steps": 5}},
        ["seeds=[3, 4]", "grid.x=[1, 2, 3]", "params.steps=7", "resources.gpu=0.25", "retries=2"],
    )
    assert s.seed_list == [3, 4]
    assert s.grid == {"x": [1, 2, 3]}
    assert s.params == {"steps": 7}
    assert s.resources.gpu == 0.25
    assert s.retries == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sedes=3", "no key 'sedes' in the spec (did you mean \"seeds\"?)"),
        ("limits.trial_tme=1h", "no key 'limits.trial_tme' in the spec"),
        ("limits.trial_tme=1h", 'did you mean "trial_time"'),
        ("resources.gpus=1", 'did you mean "gpu"'),
        ("justakey", "expected key=value"),
        ("params..steps=3", "expected key=value"),
        ("seeds=-4", "seeds is a count"),
        ("seeds.x=1", "--set seeds.x: no key 'seeds.x' in the spec"),  # seeds: {min, ...}
        ("params.steps.x=1", "params.steps is not a mapping (it is 5)"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(InputError) as err:
        load_spec({**BASE, "params": {"steps": 5}}, [override])
    assert message in str(err.value)


SET_IN_FILE = {
    "params": {"steps": 5, "dropout": 0.1},
    "grid": {"lr": [0.1, 0.3], "cell": [{"a": 1}, {"a": 2, "b": 3}]},
    "limits": {"trial_time": "2h"},
    "report": {"directions": {"loss": "lower"}, "profiles": {"mine": {"loss": 1}}},
    "scheduler": {"metric": "loss"},
    "inputs": {"models": "results/m"},
}
SET_BY_OVERRIDES = [
    "params.dropout=0.1",  # a key the file's params lacks
    "grid.lr=[0.1, 0.3]",  # a grid where the file has none
    "grid.cell=[{a: 1}, {a: 2, b: 3}]",
    "limits.trial_time=2h",  # a section the file lacks, its other keys at their defaults
    "report.directions.loss=lower",  # two levels down, in a mapping of free keys
    "report.profiles.mine.loss=1",
    "scheduler.metric=loss",  # an optional section, made
    "inputs.models=results/m",
]


def test_set_adds_any_key_as_if_the_file_said_it():
    by_set = load_spec({**BASE, "params": {"steps": 5}}, SET_BY_OVERRIDES)
    assert by_set == load_spec({**BASE, **SET_IN_FILE})
    assert by_set.params == {"steps": 5, "dropout": 0.1}
    assert by_set.grid["lr"] == [0.1, 0.3] and by_set.limits.trial_time == 7200
    assert by_set.limits.start_time == 300 and by_set.scheduler.max_t == 100
    assert by_set.report.directions == {"loss": "lower"}
    assert by_set.config_keys == ["steps", "dropout", "lr", "a", "b", "seed"]


def test_set_leaves_the_callers_dict_alone():
    raw = {**BASE, "params": {"steps": 5}, "report": {"directions": {"x": "higher"}}}
    load_spec(raw, ["params.dropout=0.1", "report.directions.loss=lower"])
    assert raw == {**BASE, "params": {"steps": 5}, "report": {"directions": {"x": "higher"}}}


@pytest.mark.parametrize(
    ("fields", "override"),
    [
        ({"retries": "many"}, "retries=many"),
        ({"resources": {"gpu": -1}}, "resources.gpu=-1"),
        ({"limits": {"trial_time": "soon"}}, "limits.trial_time=soon"),
        ({"grid": {"lr": []}}, "grid.lr=[]"),
        ({"grid": {"lr": 0.1}}, "grid.lr=0.1"),
        ({"grid": {"seed": [1, 2]}}, "grid.seed=[1, 2]"),
        ({"params": {"duration_s": 1}}, "params.duration_s=1"),
        ({"report": {"directions": {"loss": "down"}}}, "report.directions.loss=down"),
        ({"scheduler": {"mode": "min"}}, "scheduler.mode=min"),
        ({"bundle": {"by": ["seed"]}}, "bundle.by=[seed]"),
    ],
)
def test_a_bad_value_by_set_is_refused_as_in_the_file(fields, override):
    """The same message, word for word, as the file that says it."""
    with pytest.raises(InputError) as in_file:
        load_spec({**BASE, **fields})
    with pytest.raises(InputError) as by_set:
        load_spec(BASE, [override])
    assert str(by_set.value) == str(in_file.value)


def test_expand_is_grid_times_seeds_with_params():
    s = spec(grid={"a": [1, 2], "b": ["x", "y", "z"]}, seeds=[5, 9], params={"p": 0.5})
    configs = expand(s)
    assert len(configs) == 2 * 3 * 2
    assert configs[0] == {"p": 0.5, "a": 1, "b": "x", "seed": 5}
    assert {c["seed"] for c in configs} == {5, 9}
    assert len({trial_id("trivial", c) for c in configs}) == 12


def test_seed_count_means_zero_to_n_minus_one():
    assert spec(seeds=3).seed_list == [0, 1, 2]


def test_trial_ids_are_stable_and_depend_on_everything():
    config = {"a": 1, "b": "x", "seed": 0}
    assert trial_id("e", config) == trial_id("e", dict(reversed(list(config.items()))))
    # The documented format, so ids stay the same across processes and versions:
    canonical = b'{"config": {"a": 1, "b": "x", "seed": 0}, "experiment": "e"}'
    assert trial_id("e", config) == hashlib.sha1(canonical).hexdigest()[:16]
    assert trial_id("e", {**config, "seed": 1}) != trial_id("e", config)
    assert trial_id("other", config) != trial_id("e", config)


def test_extending_a_spec_keeps_old_ids():
    old = {trial_id("trivial", c) for c in expand(spec(grid={"a": [1, 2]}, seeds=2))}
    new = {trial_id("trivial", c) for c in expand(spec(grid={"a": [1, 2, 3]}, seeds=3))}
    assert old < new and len(new - old) == 9 - 4


SHIPPED = sorted((Path(__file__).parent.parent / "experiments" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_spec_is_valid_and_names_an_installed_experiment(path: Path):
    from orchestrator.registry import resolve

    loaded = load_spec(path)
    assert callable(resolve(loaded.experiment).fn) and expand(loaded)


def test_a_user_module_is_imported_from_beside_the_spec_not_from_an_earlier_folder(tmp_path):
    """Two specs in two folders, each beside its own `exp.py`, run in one process (a
    notebook, or the in-process CLI): each gets its own module, not the first one loaded."""
    from orchestrator.registry import resolve

    for value in ("first", "second"):
        (tmp_path / value).mkdir()
        (tmp_path / value / "exp.py").write_text(f"def run(config, trial):\n    return {value!r}\n")
    picked = [
        resolve("exp:run", [tmp_path / f]).fn(None, None) for f in ("first", "second", "first")
    ]
    assert picked == ["first", "second", "first"]
