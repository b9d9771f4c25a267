"""The Parquet store: atomic appends, schema evolution, what readers see. No Ray needed."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch

from orchestrator.errors import InputError
from orchestrator.store.artifacts import ArtifactWriter, check_name, encode
from orchestrator.store.folder import SweepStore


def test_appends_are_read_back_by_plain_pandas(tmp_path: Path):
    store = SweepStore(str(tmp_path), "s")
    store.append("trials", [{"trial_id": "a", "x": 1}])
    store.append("trials", [{"trial_id": "b", "x": 2}, {"trial_id": "c", "x": 3}])
    df = pd.read_parquet(tmp_path / "s" / "trials")
    assert sorted(df["trial_id"]) == ["a", "b", "c"]
    assert sorted(df["x"]) == [1, 2, 3]


def test_columns_added_later_are_seen_by_every_reader(tmp_path: Path):
    store = SweepStore(str(tmp_path), "s")
    store.append("trials", [{"trial_id": "a", "lr": 1, "loss": 0.5}])
    store.append("trials", [{"trial_id": "b", "lr": 0.5, "loss": 0.25, "acc": 0.9, "tag": "new"}])
    folder = tmp_path / "s" / "trials"

    df = pd.read_parquet(folder).set_index("trial_id").sort_index()
    assert list(df.columns) == ["lr", "loss", "acc", "tag"]
    assert df.loc["a", "lr"] == 1.0 and df.loc["b", "lr"] == 0.5  # int widened to float
    assert np.isnan(df.loc["a", "acc"]) and df.loc["b", "acc"] == 0.9
    assert pd.isna(df.loc["a", "tag"])

    duck = duckdb.sql(f"select * from read_parquet('{folder}/*.parquet', union_by_name=true)").df()
    assert len(duck) == 2 and set(duck.columns) == {"trial_id", "lr", "loss", "acc", "tag"}
    polars = pl.scan_parquet(
        f"{folder}/*.parquet",
        missing_columns="insert",
        cast_options=pl.ScanCastOptions(integer_cast="allow-float"),
    ).collect()
    assert polars.height == 2 and "acc" in polars.columns


def test_clashing_types_become_text_not_errors(tmp_path: Path):
    store = SweepStore(str(tmp_path), "s")
    store.append("trials", [{"trial_id": "a", "size": 3}])
    store.append("trials", [{"trial_id": "b", "size": "large"}, {"trial_id": "c", "size": [1]}])
    df = pd.read_parquet(tmp_path / "s" / "trials").set_index("trial_id").sort_index()
    assert list(df["size"]) == ["3", "large", "[1]"]


def test_a_crashed_write_leaves_no_file_readers_see(tmp_path: Path):
    store = SweepStore(str(tmp_path), "s")
    store.append("trials", [{"trial_id": "a"}])
    # What a crash between writing and renaming leaves behind: a hidden temp file.
    (tmp_path / "s" / "trials" / ".tmp-deadbeef").write_bytes(b"PAR1 half a file")
    assert list(pd.read_parquet(tmp_path / "s" / "trials")["trial_id"]) == ["a"]
    assert list(SweepStore(str(tmp_path), "s").read("trials")["trial_id"]) == ["a"]


def test_new_store_learns_the_schema_from_disk(tmp_path: Path):
    SweepStore(str(tmp_path), "s").append("metrics", [{"trial_id": "a", "loss": 1.0}])
    fresh = SweepStore(str(tmp_path), "s")
    fresh.append("metrics", [{"trial_id": "b", "acc": 0.5}])
    assert list(fresh.read("metrics").columns) == ["trial_id", "loss", "acc"]


def test_reading_an_empty_table(tmp_path: Path):
    store = SweepStore(str(tmp_path), "s")
    assert store.read("trials", ["trial_id"]).empty
    assert store.schema("trials") is None


def test_a_file_where_the_folder_should_be_is_refused(tmp_path: Path):
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(InputError, match="cannot write under"):
        SweepStore(str(tmp_path / "results"), "s").check_writable()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_a_read_only_file_system_is_refused():
    with pytest.raises(InputError, match="cannot write under /proc"):
        SweepStore("/proc/raysweep-results", "s").check_writable()


def test_artifacts_round_trip_by_type(tmp_path: Path):
    writer = ArtifactWriter(str(tmp_path), "s")
    array = np.arange(6.0).reshape(2, 3)
    path = writer.write("t1", "preds.npy", encode(array))
    assert np.array_equal(np.load(path), array)
    state = {"w": torch.ones(2)}
    loaded = torch.load(writer.write("t1", "ckpt/model.pt", encode(state)))
    assert torch.equal(loaded["w"], state["w"])
    assert Path(writer.write("t1", "note.txt", encode("hello"))).read_text() == "hello"
    source = tmp_path / "plot.png"
    source.write_bytes(b"\x89PNG")
    assert Path(writer.write("t1", "plot.png", encode(source))).read_bytes() == b"\x89PNG"
    assert (tmp_path / "s" / "artifacts" / "t1" / "ckpt" / "model.pt").is_file()


@pytest.mark.parametrize("name", ["../escape", "/abs", "", ".hidden"])
def test_artifact_names_stay_inside_the_trial_folder(name: str):
    with pytest.raises(ValueError, match="artifact name"):
        check_name(name)
