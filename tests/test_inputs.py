"""A sweep that reads another sweep's artifacts (`inputs:`), on a real local Ray: trials
find the input's trial by config and read what it saved; a missing or empty input is
bad input, refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import write_sweep

from orchestrator import InputError, run_sweep
from orchestrator.store.inputs import resolve_inputs

MODULE = """
    from pathlib import Path

    def produce(config, trial):
        trial.save_artifact("value.txt", str(config["x"] * 10))
        return {"made": config["x"] * 10}

    def consume(config, trial):
        source = trial.inputs["source"]
        tid = source.find(x=config["x"], seed=0)
        return {"read": float(Path(source.artifact(tid, "value.txt")).read_text())}
"""


@pytest.fixture(scope="module")
def produced(ray_instance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    spec = write_sweep(folder, "pipe", MODULE, name="produce", experiment="pipe:produce",
                       grid={"x": [1, 3]}, storage=str(folder / "results"))  # fmt: skip
    assert run_sweep(spec, progress=None).count("ok") == 2
    return folder


def test_a_sweep_reads_the_artifacts_of_another(produced: Path):
    results = produced / "results"
    spec = {"name": "consume", "experiment": "pipe:consume", "grid": {"x": [1, 3]},
            "storage": str(results), "inputs": {"source": str(results / "produce")}}  # fmt: skip
    result = run_sweep(spec, progress=None)
    assert result.count("ok") == 2, result.rows
    read = pd.read_parquet(results / "consume" / "trials").set_index("x")["read"]
    assert read.to_dict() == {1: 10.0, 3: 30.0}
    meta = pd.read_json(results / "consume" / "sweep.json", typ="series")
    assert meta["inputs"] == {"source": str(results / "produce")}


def test_find_says_what_is_missing(produced: Path):
    source = resolve_inputs({"source": str(produced / "results" / "produce")})["source"]
    assert len(source.trials()) == 2
    with pytest.raises(LookupError, match="no successful trial with {'x': 9}"):
        source.find(x=9)
    with pytest.raises(KeyError, match="no config key \\['size'\\]"):
        source.find(size="little")


def test_a_missing_input_is_refused_before_anything_is_written(produced: Path):
    results = produced / "results"
    spec = {"name": "orphan", "experiment": "pipe:consume", "grid": {"x": [1]},
            "storage": str(results), "inputs": {"source": str(results / "nothing")}}  # fmt: skip
    with pytest.raises(InputError, match="inputs.source: .* is not a sweep folder"):
        run_sweep(spec, progress=None)
    assert not (results / "orphan").exists()
