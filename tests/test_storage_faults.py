"""Storage that fails: Parquet files cut short or overwritten with garbage are skipped
with a warning by every reader and set aside by the next run, which runs again only the
trials they held; and a disk that fills up mid-sweep stops it cleanly, leaving no partial
file, so that a rerun after space is freed loses nothing."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import assert_exactly_once, cli, make_sweep, steps, sweep, trial, write_sweep

from analysis import load
from analysis.tables import UnreadableFileWarning
from orchestrator.store.folder import SweepStore

BLOB_MODULE = """
    import random
    import time
    import uuid
    from pathlib import Path

    RAN = Path(__file__).with_name("ran")  # where it exists: a file per execution in it

    def experiment(config, trial):
        if RAN.is_dir():
            (RAN / f"{trial.id}-{uuid.uuid4().hex}").touch()
        time.sleep(0.2)
        for step in range(2):
            trial.report(step=step, loss=config["x"] / (step + 1))
        noise = random.Random(f"{config['x']}/{trial.seed}")  # the same in every run
        if config["report_kb"]:  # random text does not compress: rows this big on disk
            trial.report(noise=noise.randbytes(config["report_kb"] * 512).hex())
        if config["artifact_kb"]:
            trial.save_artifact("blob.bin", noise.randbytes(config["artifact_kb"] * 1024))
        return {"loss": config["x"] / 2}
"""
VALUES = ["x", "seed", "loss"]


def write_spec(folder: Path, **fields) -> Path:
    return write_sweep(
        folder, "blob_exp", BLOB_MODULE, name="s", experiment="blob_exp:experiment", **fields
    )


def tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(folder / "trials"), pd.read_parquet(folder / "metrics")


def cut_short(path: Path) -> None:
    """What an interrupted copy leaves: the first half of the file."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def files(folder: Path) -> list[Path]:
    """A table's files, newest first (as the store names them)."""
    return sorted(folder.glob("*.parquet"))


def test_a_truncated_file_is_skipped_with_a_warning(tmp_path: Path):
    store = SweepStore(str(tmp_path), "s")
    store.append("trials", [{"trial_id": "a", "x": 1}])
    store.append("trials", [{"trial_id": "b", "x": 0.5, "acc": 0.9}])
    store.append("trials", [{"trial_id": "c", "x": 2.0, "tag": "new"}])
    newest = files(tmp_path / "s" / "trials")[0]
    cut_short(newest)  # the file that carried the union of the columns

    fresh = SweepStore(str(tmp_path), "s")
    with pytest.warns(UnreadableFileWarning, match=f"{newest}.*left out") as caught:
        table = fresh.read("trials").set_index("trial_id").sort_index()
        assert list(fresh.schema("trials").names) == ["trial_id", "x", "acc"]
    assert len(caught) == 1  # one warning per file, however often it is read
    assert list(table.index) == ["a", "b"]
    assert list(table["x"]) == [1.0, 0.5]  # int widened to float, as the store does
    assert pd.isna(table.loc["a", "acc"]) and table.loc["b", "acc"] == 0.9

    with pytest.warns(UnreadableFileWarning, match="corrupt/trials"):
        fresh.set_aside_unreadable()
    assert (tmp_path / "s" / "corrupt" / "trials" / newest.name).read_bytes()
    fresh.append("trials", [{"trial_id": "d", "x": 3}])
    everyone = pd.read_parquet(tmp_path / "s" / "trials")  # plain pandas reads it again
    assert sorted(everyone["trial_id"]) == ["a", "b", "d"]
    assert list(everyone.columns) == ["trial_id", "x", "acc"]


def test_status_and_load_skip_bad_files_and_name_them(tmp_path: Path):
    rows = [trial(f"t{i}", "ab"[i % 2], i // 2, loss=float(i)) for i in range(6)]
    folder = make_sweep(
        tmp_path, "s", rows, [s for i in range(6) for s in steps(f"t{i}", [2, 1])], seeds=3
    )
    bad_trials = files(folder / "trials")[0]
    cut_short(bad_trials)
    bad_metrics = folder / "metrics" / "0000000000000000-garbage.parquet"
    bad_metrics.write_bytes(b"PAR1" + os.urandom(500) + b"PAR1")  # a disk error's garbage

    with pytest.warns(UnreadableFileWarning) as caught:
        loaded = load(folder)
    assert {str(bad_trials), str(bad_metrics)} <= {str(w.message).split()[0] for w in caught}
    assert len(loaded.trials) == 5 and len(loaded.metrics) == 12  # `sweep report` reads this

    status = sweep("status", str(folder), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"warning: {bad_trials} cannot be read" in status.stderr
    assert "5 ok" in status.stdout


def test_a_resumed_run_reruns_the_trials_whose_only_row_was_in_a_bad_file(
    tmp_path: Path, ray_instance
):
    """Two runs with compaction off leave the trials in several files; one of them, cut
    short, holds some of the rows. The next run sets it aside to corrupt/trials/ with a
    warning and runs again exactly the trials it held (counted by their executions), which
    end as they did before."""
    fields = {"grid": {"x": [1, 2, 3]}, "seeds": 2, "params": {"report_kb": 0, "artifact_kb": 0}}
    spec = write_spec(tmp_path, **fields)
    (tmp_path / "ran").mkdir()
    for seeds in (1, 2):  # the second run's rows in files of their own
        out = cli("run", str(spec), "-q", "--set", f"seeds={seeds}", cwd=tmp_path,
                  env={"RAYSWEEP_COMPACT": "0"})  # fmt: skip
        assert out.returncode == 0, out.stderr
    folder = tmp_path / "results" / "s"
    before = tables(folder)
    everyone = set(before[0]["trial_id"])
    bad = files(folder / "trials")[0]
    lost = set(pq.read_table(bad)["trial_id"].to_pylist())
    assert len(everyone) == 6 and 0 < len(lost) < 6
    cut_short(bad)

    with pytest.warns(UnreadableFileWarning) as caught:
        rerun = cli("run", str(spec), "-q", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    said = [str(w.message) for w in caught]
    assert any(m.startswith(f"{bad} cannot be read") for m in said), said
    assert any(f"to {folder / 'corrupt' / 'trials' / bad.name};" in m for m in said), said
    assert (folder / "corrupt" / "trials" / bad.name).read_bytes()  # kept for the user
    assert f"6 trials: {6 - len(lost)} already done" in rerun.stdout
    ran = Counter(p.name.split("-")[0] for p in (tmp_path / "ran").iterdir())
    assert ran == {tid: 1 + (tid in lost) for tid in everyone}  # only the lost ran again
    trials, metrics = tables(folder)
    assert_exactly_once(trials, metrics, everyone, before, VALUES)
    ok = trials[trials["status"] == "ok"]
    assert set(ok.loc[ok["attempt"] == 2, "trial_id"]) == lost  # the steps of 1 were kept


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs (unmounted afterwards); skipped where mounting is not permitted."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    yield where
    subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize(
    ("full_at", "report_kb", "artifact_kb"), [("flush", 256, 0), ("artifact", 0, 512)]
)
def test_enospc_leaves_nothing_half_written(
    tmp_path, small_disk, ray_instance, full_at, report_kb, artifact_kb
):
    """Four trials whose rows (or artifacts) need about 2 MiB, on a 1 MiB disk: the first
    writes fit, a later one does not. After space is freed, the rerun ends as the same
    sweep run on a roomy disk."""
    fields = {"grid": {"x": [1, 2]}, "seeds": 2,
              "params": {"report_kb": report_kb, "artifact_kb": artifact_kb}}  # fmt: skip
    roomy = tmp_path / "roomy"
    roomy.mkdir()
    assert cli("run", str(write_spec(roomy, **fields)), "-q", cwd=roomy).returncode == 0
    undisturbed = tables(roomy / "results" / "s")

    spec = write_spec(tmp_path, storage=str(small_disk / "results"), **fields)
    full = sweep("run", str(spec), cwd=tmp_path)
    assert full.returncode == 3, full.stderr
    assert "error: no space left on the disk holding the sweep folder" in full.stderr
    assert "then run the same `sweep run` again" in full.stderr
    folder = small_disk / "results" / "s"
    assert not list(folder.rglob(".tmp-*"))
    for path in folder.rglob("*.parquet"):
        pq.read_table(path)  # whole, or not there at all
    for path in folder.glob("artifacts/*/blob.bin"):
        assert path.stat().st_size == artifact_kb * 1024

    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    rerun = cli("run", str(spec), "-q", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    trials, metrics = tables(folder)
    assert_exactly_once(trials, metrics, set(undisturbed[0]["trial_id"]), undisturbed, VALUES)
    assert not (folder / "corrupt").exists()
    if artifact_kb:
        saved = {p.parent.name: p.read_bytes() for p in folder.glob("artifacts/*/blob.bin")}
        assert saved == {
            p.parent.name: p.read_bytes() for p in roomy.glob("results/s/artifacts/*/blob.bin")
        }
