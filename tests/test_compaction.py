"""Compaction: a sweep's tables rewritten into few files keep every row, value and type,
stay whole for every reader when `sweep compact` is SIGKILLed at any moment, are refused
while a run writes the sweep, and happen by themselves at the end of `sweep run` (unless
RAYSWEEP_COMPACT=0); a run that starts during a compaction waits for it."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import io
import json
import math
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import SWEEP, cli, cli_env, sweep

from analysis import load
from analysis.tables import COLUMN_TYPES
from orchestrator.errors import InputError
from orchestrator.params import effective
from orchestrator.registry import resolve
from orchestrator.runner import plan, run_sweep
from orchestrator.spec import load_spec
from orchestrator.store import compaction
from orchestrator.store.compaction import SWITCH, compact, compact_after_run, parse_size
from orchestrator.store.folder import TABLES, SweepStore
from orchestrator.summary import status_text
from orchestrator.trials import expand, trial_id

KEYS = {"trials": ["trial_id", "attempt"], "metrics": ["trial_id", "attempt", "step"]}
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def build(root: Path, name: str, trials: int, steps: int) -> Path:
    """A sweep of the `trivial` experiment as a run leaves it, one file per trial and
    table: columns that appear halfway, an int column widened to float, null and NaN."""
    spec = load_spec({"name": name, "experiment": "trivial", "grid": {"x": list(range(trials))}})
    store = SweepStore(str(root), name)
    store.write_meta(
        {
            "name": name,
            "experiment": "trivial",
            "config_columns": ["x", "seed"],
            "spec": spec.model_dump(),
            "runs": [
                {"run_id": "r1", "started_at": "2026-01-01", "status": "finished", "total": trials,
                 "to_run": trials, "host": socket.gethostname(), "pid": 1}
            ],
        }
    )  # fmt: skip
    for i, config in enumerate(expand(spec)):
        tid = trial_id("trivial", config)
        late = {"late": f"tag{i}" if i % 3 else None, "size": i + 0.5} if i > trials // 2 else {}
        metric_rows = [
            {"trial_id": tid, "attempt": 1, "step": s, "time": START + timedelta(seconds=i + s),
             "value": math.nan if s == 2 and i % 4 == 0 else float(s * i), **late}
            for s in range(steps)
        ]  # fmt: skip
        store.append("metrics", metric_rows, COLUMN_TYPES["metrics"])
        final = math.nan if i % 7 == 0 else (None if i % 5 == 0 else i / 3)
        status = "failed" if i % 10 == 3 else "ok"
        row = {"trial_id": tid, "status": status, "attempt": 1, **config, "final": final}
        row["error"] = "ValueError: boom" if status == "failed" else None
        row["size"] = i if i <= trials // 2 else i + 0.5  # int first, float later
        store.append("trials", [{**row, **late}], COLUMN_TYPES["trials"])
    return root / name


def seen(folder: Path) -> dict[str, pa.Table]:
    """Each table as a reader of the folder gets it."""
    return {table: pq.read_table(folder / table) for table in TABLES}


def values(table: pa.Table) -> list[tuple]:
    """Rows as tuples, NaN made comparable (and still apart from null)."""
    nan = "NaN"
    return [
        tuple(nan if isinstance(v, float) and math.isnan(v) else v for v in row.values())
        for row in table.to_pylist()
    ]


def files(folder: Path) -> dict[str, int]:
    return {table: len(list((folder / table).glob("*.parquet"))) for table in TABLES}


def test_compaction_keeps_every_row_value_and_type(tmp_path: Path):
    folder = build(tmp_path, "s", trials=150, steps=3)
    before = seen(folder)
    frames = {table: pd.read_parquet(folder / table) for table in TABLES}

    compact(SweepStore(str(tmp_path), "s"), target_bytes=60_000)  # a few files per table
    few = files(folder)
    assert all(1 < few[t] < 150 for t in TABLES), few
    for table in TABLES:  # each file has every column: any of them may be the one sorted first
        schemas = [pq.read_schema(f) for f in (folder / table).glob("*.parquet")]
        assert all(schema == before[table].schema for schema in schemas)
    out = cli("compact", str(folder), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"trials: {few['trials']} files -> 1",
                                       f"metrics: {few['metrics']} files -> 1"]  # fmt: skip
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".compact.lock", *TABLES, "sweep.json"]
    )

    after = seen(folder)
    for table in TABLES:  # same columns, types, rows, values (null apart from NaN), order
        assert after[table].schema == before[table].schema
        assert values(after[table]) == values(before[table])
        pd.testing.assert_frame_equal(pd.read_parquet(folder / table), frames[table])

    # Later appends sort first and may add columns; compacting again takes them in.
    store = SweepStore(str(tmp_path), "s")
    store.append("trials", [{"trial_id": "new", "attempt": 1, "status": "ok", "extra": 1.5}])
    assert pd.read_parquet(folder / "trials")["extra"].notna().sum() == 1
    assert cli("compact", str(folder), cwd=tmp_path).stdout.startswith("trials: 2 files -> 1")
    trials = pd.read_parquet(folder / "trials")
    assert len(trials) == 151 and trials["trial_id"].iloc[0] == "new"


def expected(folder: Path) -> dict[str, pd.DataFrame]:
    return {t: _by_key(pd.read_parquet(folder / t), t) for t in TABLES}


def _by_key(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    return frame.sort_values(KEYS[table]).reset_index(drop=True)


def nan_finals(folder: Path) -> int:
    """Trial rows whose `final` is NaN (not null): `sweep status` lists each once."""
    return pc.sum(pc.is_nan(pq.read_table(folder / "trials")["final"])).as_py()


def assert_every_reader_sees_each_row_once(
    folder: Path, want: dict[str, pd.DataFrame], nans: int
) -> None:
    """pd.read_parquet, the store (what resume reads), analysis.load and sweep status."""
    store = SweepStore(str(folder.parent), folder.name)
    loaded = load(folder)
    for table in TABLES:
        for frame in (
            pd.read_parquet(folder / table),
            store.read(table),
            getattr(loaded, table).drop(columns="sweep"),
        ):
            pd.testing.assert_frame_equal(_by_key(frame, table), want[table])
    trials = want["trials"]
    spec = load_spec({**store.read_meta()["spec"], "storage": str(folder.parent)})
    the_plan = plan(spec, folder)
    assert len(the_plan.attempts) == len(trials)
    assert the_plan.done == set(trials.loc[trials["status"] == "ok", "trial_id"])
    text = status_text(store)
    ok, failed = (trials["status"] == "ok").sum(), (trials["status"] == "failed").sum()
    assert f"{len(trials)} total | {ok} ok | {failed} failed | 0 not run" in text
    assert f"... {len(trials) - 30} more rows" in text  # every row listed once
    assert text.count("final = nan") == nans


@pytest.fixture(scope="module")
def big_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A sweep of 200 files per table, and how long compacting it takes here (s)."""
    folder = build(tmp_path_factory.mktemp("big"), "big", trials=200, steps=10)
    trial = tmp_path_factory.mktemp("trial")
    shutil.copytree(folder, trial / folder.name)
    start = time.monotonic()
    compact(SweepStore(str(trial), folder.name))
    return folder, time.monotonic() - start


def _compact_and_kill(folder: Path, table: str, delay: float) -> dict[str, object]:
    """Start `sweep compact`, SIGKILL it `delay` s after it began writing the copy of
    `table`; what the sweep folder held at the kill (`killed` False: it ended first)."""
    compactor = subprocess.Popen(
        [SWEEP, "compact", str(folder)], env=cli_env(), cwd=folder.parent,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (folder / f".{table}-compact").exists() and compactor.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    time.sleep(delay)
    compactor.send_signal(signal.SIGKILL)
    state = {"killed": compactor.wait() == -signal.SIGKILL, **files(folder)}
    return state | {f".{t}-compact": (folder / f".{t}-compact").exists() for t in TABLES}


def test_sigkill_during_compaction_leaves_every_row_exactly_once(
    big_sweep: tuple[Path, float], tmp_path: Path
):
    """Kills while trials/ is copied and while metrics/ is (trials/ swapped already), each
    at the start of that copy and later into the compaction's measured time."""
    template, seconds = big_sweep
    want, nans = expected(template), nan_finals(template)
    assert nans > 0
    states = []
    kills = [(table, share) for table in TABLES for share in (0.0, 0.15, 0.3)]
    for number, (table, share) in enumerate(kills):
        folder = tmp_path / f"kill{number}" / template.name
        shutil.copytree(template, folder)
        states.append(_compact_and_kill(folder, table, share * seconds))
        assert_every_reader_sees_each_row_once(folder, want, nans)
        assert compact(SweepStore(str(folder.parent), folder.name)).keys() == set(TABLES)
        assert files(folder) == {t: 1 for t in TABLES}
        assert not any(p.name.endswith("-compact") for p in folder.iterdir())
        assert_every_reader_sees_each_row_once(folder, want, nans)
    # The kills at the start of each copy fell in it: trials/ not swapped yet; then trials/
    # swapped (one file) and metrics/ not yet.
    first_copy, second_copy = states[0], states[3]
    assert first_copy["killed"] and first_copy["trials"] == 200, states
    assert second_copy["killed"] and second_copy["trials"] == 1, states
    assert second_copy["metrics"] == 200, states


def test_refused_while_a_run_writes_the_sweep_or_another_compaction_runs(tmp_path: Path):
    folder = build(tmp_path, "s", trials=10, steps=2)
    store = SweepStore(str(tmp_path), "s")
    meta = store.read_meta()
    runner = subprocess.Popen(["sleep", "60"])  # a live process standing for the run's driver
    run = {**meta["runs"][0], "run_id": "live1", "status": "running", "pid": runner.pid}
    store.write_meta({**meta, "runs": [*meta["runs"], run]})
    try:
        out = sweep("compact", str(folder), cwd=tmp_path)  # the entry point's exit code
        assert out.returncode == 2
        assert f"run live1 (pid {runner.pid} on {socket.gethostname()}) is still writing" in (
            out.stderr
        )
        assert files(folder) == {"trials": 10, "metrics": 10}
    finally:
        runner.kill()
        runner.wait()
    with open(folder / ".compact.lock", "a") as lock:  # as a compaction under way holds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(InputError, match="another compaction of this sweep is under way"):
            compact(store)
    out = cli("compact", str(folder), cwd=tmp_path)  # the run's driver died: compact
    assert out.returncode == 0 and files(folder) == {"trials": 1, "metrics": 1}, out.stderr


@pytest.mark.parametrize(
    ("text", "size"), [("128MB", 128 * 2**20), ("1.5g", 3 * 2**29), ("64KiB", 2**16), ("900", 900)]
)
def test_target_sizes(text: str, size: int):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "0MB", "-1", "12XB"])
def test_bad_target_sizes(text: str):
    with pytest.raises(InputError, match="give a size such as 128MB"):
        parse_size(text)


@pytest.mark.parametrize("switch", [None, "0"], ids=["compacted", f"{SWITCH}=0"])
def test_a_run_ends_with_one_file_per_table(tmp_path: Path, ray_instance, switch: str | None):
    """...unless RAYSWEEP_COMPACT=0: then the earlier files stay as they were, beside the
    run's own."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: toy\nexperiment: trivial\ngrid: {x: [1, 2]}\nseeds: 2\n")
    # A trial that failed in an earlier run, as the writer wrote it: one file per table.
    store = SweepStore(str(tmp_path / "results"), "toy")
    store.write_meta({"name": "toy", "experiment": "trivial", "runs": []})
    config = effective(resolve("trivial").params, expand(load_spec(spec))[0])
    tid = trial_id("trivial", config)  # as the run will number it, defaults included
    store.append("trials", [{"trial_id": tid, "status": "failed", "attempt": 1, "error": "E"}])
    step = {"trial_id": tid, "attempt": 1, "time": START, "step": 0, "value": 0.0}
    store.append("metrics", [step], COLUMN_TYPES["metrics"])
    folder = tmp_path / "results" / "toy"
    earlier = {table: set((folder / table).glob("*.parquet")) for table in TABLES}

    out = cli("run", str(spec), "-q", cwd=tmp_path, env={SWITCH: switch})
    assert out.returncode == 0, out.stderr
    now = {table: set((folder / table).glob("*.parquet")) for table in TABLES}
    if switch is None:  # the earlier files and this run's, rewritten into one
        assert files(folder) == {"trials": 1, "metrics": 1}
        assert all(not earlier[t] & now[t] for t in TABLES)
    else:  # nothing rewritten
        assert all(earlier[t] < now[t] for t in TABLES), now
    trials = pd.read_parquet(folder / "trials")
    attempts = sorted(zip(trials["status"], trials["attempt"], strict=True))
    assert attempts == [("failed", 1), ("ok", 1), ("ok", 1), ("ok", 1), ("ok", 2)]
    assert len(pd.read_parquet(folder / "metrics")) == 1 + 4 * 5
    again = cli("run", str(spec), "--dry-run", cwd=tmp_path)
    assert "4 in all, 4 already done, 0 to run" in again.stdout


def test_a_run_that_starts_during_a_compaction_waits_for_it(tmp_path: Path, ray_instance):
    """The run records its start, then waits on the compaction's lock: it removes nothing
    (not the compaction's hidden folder) and runs no trial until the lock is released."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: toy\nexperiment: trivial\ngrid: {{x: [1, 2]}}\nstorage: {tmp_path}\n")
    folder = tmp_path / "toy"
    (folder / ".trials-compact").mkdir(parents=True)  # the compaction's copy, under way
    with open(folder / ".compact.lock", "a") as lock, ThreadPoolExecutor(1) as pool:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a compaction holds it while it runs
        run = pool.submit(run_sweep, str(spec), progress=None)
        deadline = time.monotonic() + 120
        while not (folder / "sweep.json").exists():
            assert time.monotonic() < deadline and not run.done(), run.exception()
            time.sleep(0.05)
        time.sleep(1.0)  # time enough to start a trial, were it not waiting
        assert not run.done()
        assert (folder / ".trials-compact").exists() and not (folder / "trials").exists()
        assert json.loads((folder / "sweep.json").read_text())["runs"][0]["status"] == "running"
        released = pd.Timestamp.now(tz="UTC")
        fcntl.flock(lock, fcntl.LOCK_UN)
        assert run.result(timeout=120).count("ok") == 2
    assert not (folder / ".trials-compact").exists()
    trials = pd.read_parquet(folder / "trials")
    assert len(trials) == 2 and (trials["started_at"] > released).all()


def _refused(source: bytes, target: bytes, flags: int) -> int:
    """A swap the filesystem does not support (NFS, for one): EINVAL."""
    ctypes.set_errno(errno.EINVAL)
    return -1


@pytest.mark.parametrize(
    "libc", [SimpleNamespace(), SimpleNamespace(renamex_np=_refused)], ids=["no call", "refused"]
)
def test_where_folders_cannot_be_swapped_the_tables_stay_as_written_and_a_line_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, libc: SimpleNamespace
):
    """A C library without renameat2 and renamex_np, or a filesystem that refuses the swap."""
    monkeypatch.setattr(compaction, "_libc", lambda: libc)
    folder = build(tmp_path, "s", trials=20, steps=2)
    written = {path: path.read_bytes() for path in folder.rglob("*.parquet")}
    out = io.StringIO()
    compact_after_run(SweepStore(str(tmp_path), "s"), out)
    assert out.getvalue().startswith("tables not compacted: ")
    assert "cannot swap two folders in one step" in out.getvalue()
    assert out.getvalue().count("\n") == 1  # one line
    assert {path: path.read_bytes() for path in folder.rglob("*.parquet")} == written
    assert not any(p.name.endswith("-compact") for p in folder.iterdir())
    assert cli("compact", str(folder), cwd=tmp_path).returncode == 2


def test_on_macos_renamex_np_swaps_the_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A C library with renamex_np and no renameat2, as macOS's: compaction asks it to swap
    (RENAME_SWAP, 2), carried out here by Linux's exchange, and every reader sees each row
    once, with the same values."""
    linux = ctypes.CDLL(None, use_errno=True).renameat2
    linux.argtypes = [ctypes.c_int, ctypes.c_char_p] * 2 + [ctypes.c_uint]
    flags_given = []

    def renamex_np(source: bytes, target: bytes, flags: int) -> int:
        flags_given.append(flags)
        return linux(-100, source, -100, target, 2)  # AT_FDCWD, RENAME_EXCHANGE

    monkeypatch.setattr(compaction, "_libc", lambda: SimpleNamespace(renamex_np=renamex_np))
    folder = build(tmp_path, "s", trials=40, steps=3)
    want, nans, before = expected(folder), nan_finals(folder), seen(folder)
    compact(SweepStore(str(tmp_path), "s"))
    assert flags_given == [2, 2] and files(folder) == {t: 1 for t in TABLES}
    assert_every_reader_sees_each_row_once(folder, want, nans)
    assert all(values(seen(folder)[t]) == values(before[t]) for t in TABLES)
