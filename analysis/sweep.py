"""Load sweeps from their folders into pandas: `load(path)` -> `Sweep`.

A sweep folder holds `trials/`, `metrics/`, optional `pairs/` (Parquet) and
`sweep.json`. `load` takes one sweep folder, a results root holding several, or
a list of either, as local paths or URIs (`s3://bucket/results/name`, read
through pyarrow's filesystems); with several sweeps the tables are stacked and
columns unified (a column one sweep lacks is null there).

Vocabulary: a *factor* is a config column that varies between trials (the seed
aside); a *group* is one combination of factor values, i.e. a config minus its
seed; the seeds of a group are its repeated observations.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from analysis.errors import AnalysisError
from analysis.settings import ReportSettings
from analysis.tables import BOOKKEEPING, PAIR_COLUMNS, STEP_COLUMNS, SUCCESS, read_parquet


@dataclass
class Sweep:
    """One or several sweeps' tables, and what their sweep.json files say."""

    trials: pd.DataFrame  # one row per trial attempt, failed ones included
    metrics: pd.DataFrame  # one row per reported step, every attempt
    pairs: pd.DataFrame | None  # one row per pair of seeds, when the experiment wrote pairs/
    meta: dict[str, dict[str, Any]]  # sweep name -> its sweep.json
    config_columns: list[str]
    # Reported NaN/Inf values (pandas cannot tell them from "not reported"): sweep, table,
    # trial_id, attempt, column, value.
    non_finite: pd.DataFrame
    folders: dict[str, Folder] = field(default_factory=dict)  # sweep name -> where it was read

    @property
    def names(self) -> list[str]:
        return list(self.meta)

    @property
    def name(self) -> str:
        return " + ".join(self.names)

    @cached_property
    def ok(self) -> pd.DataFrame:
        """One row per trial that succeeded: its last successful attempt."""
        done = self.trials[self.trials["status"].isin(SUCCESS)]
        return done.sort_values("attempt").drop_duplicates(["sweep", "trial_id"], keep="last")

    @cached_property
    def factors(self) -> list[str]:
        """Config columns that take more than one value among the trials (failed ones
        too, so a config that always failed is still a group); `sweep` first when there
        are several sweeps."""
        candidates = [c for c in self.config_columns if c != "seed" and c in self.trials]
        varying = [c for c in candidates if self.trials[c].nunique(dropna=False) > 1]
        return (["sweep"] if len(self.meta) > 1 else []) + varying

    @cached_property
    def grid_factors(self) -> dict[str, list[str]]:
        """Factors as the specs define them: a grid entry that sets several keys together
        (activation with its beta) is one factor; the sweep is one when there are several."""
        factors = {"sweep": ["sweep"]} if len(self.meta) > 1 else {}
        for meta in self.meta.values():
            for entry, values in (meta.get("spec", {}).get("grid") or {}).items():
                linked = isinstance(values, list) and all(isinstance(v, dict) for v in values)
                keys = list(dict.fromkeys(k for v in values for k in v)) if linked else [entry]
                varying = [k for k in keys if k in self.factors]
                if varying:
                    factors.setdefault(entry, varying)
        return factors

    @property
    def group_columns(self) -> list[str]:
        """What a group is keyed by: the factors, or the sweep when no factor varies."""
        return self.factors or ["sweep"]

    @cached_property
    def final_metrics(self) -> list[str]:
        """Numeric columns of the trials table that hold results, not config or bookkeeping;
        a metric every trial reported as NaN is one too."""
        reported_nan = set(self.non_finite.loc[self.non_finite["table"] == "trials", "column"])
        return _numeric(self.trials, BOOKKEEPING | set(self.config_columns), reported_nan)

    @cached_property
    def step_metrics(self) -> list[str]:
        reported_nan = set(self.non_finite.loc[self.non_finite["table"] == "metrics", "column"])
        return _numeric(self.metrics, STEP_COLUMNS, reported_nan)

    @cached_property
    def pair_metrics(self) -> list[str]:
        if self.pairs is None:
            return []
        return _numeric(self.pairs, PAIR_COLUMNS | set(self.config_columns))

    @cached_property
    def ids(self) -> pd.DataFrame:
        """Per successful trial: sweep, trial_id, attempt, its config, and its `group` label."""
        keys = ["sweep", "trial_id", "attempt", *self.group_columns, *self.config_columns]
        columns = list(dict.fromkeys(keys))
        return self.ok[columns].assign(group=self.label(self.ok))

    @cached_property
    def steps(self) -> pd.DataFrame:
        """Per-step rows of the successful attempts, with their config and group label
        (merged once: the checks and the curves both read it)."""
        return self.metrics.merge(self.ids, on=["sweep", "trial_id", "attempt"], how="inner")

    def seeds_asked(self) -> dict[str, int | None]:
        """Per sweep, how many seeds each group should have (None for a search, or seeds
        added until decided)."""
        asked = {}
        for name, meta in self.meta.items():
            spec = meta.get("spec", {})
            seeds = spec.get("seeds")
            grid = (spec.get("search") or {}).get("algorithm", "grid") == "grid"
            if isinstance(seeds, dict) or not grid:  # added until decided, or a search
                asked[name] = None
            else:
                asked[name] = seeds if isinstance(seeds, int) else len(seeds or [])
        return asked

    def settings(self) -> ReportSettings:
        """The `report:` sections of the sweeps' specs, merged in order."""
        merged = ReportSettings()
        for meta in self.meta.values():
            merged = merged.merged(ReportSettings(**(meta.get("spec", {}).get("report") or {})))
        return merged

    def label(self, frame: pd.DataFrame) -> pd.Series:
        """A readable name per row for its group: `relu`, or `activation=smelu beta=0.5`."""
        return label_rows(frame, self.group_columns)


def label_rows(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Per row, its values of `columns`: the bare value for one column, `key=value ...`
    for several (missing values left out), '' for none."""
    if not columns:
        return pd.Series("", index=frame.index, dtype=object)
    values = {c: frame[c] if c in frame else pd.Series(None, index=frame.index) for c in columns}
    if len(columns) == 1:
        return values[columns[0]].map(_text)
    parts = [
        values[c].map(lambda v, c=c: "" if _missing(v) else f"{c}={_text(v)}") for c in columns
    ]
    names = [" ".join(p for p in row if p) for row in zip(*parts, strict=True)]
    return pd.Series(names, index=frame.index, dtype=object)


def load(paths: str | Path | Sequence[str | Path], steps: bool = True) -> Sweep:
    """Every sweep under `paths`: a sweep folder, a folder of sweep folders, or a list;
    local paths or URIs (s3://...). `steps=False` leaves the per-step metrics table unread
    (it can hold millions of rows) for what needs only the trials and pairs."""
    folders = _sweep_folders([paths] if isinstance(paths, str | Path) else list(paths))
    metas, where = {}, {}
    frames: dict[str, list[pd.DataFrame]] = {"trials": [], "pairs": []}
    if steps:
        frames["metrics"] = []
    non_finite = [_NO_VALUES]
    for folder in folders:
        meta = json.loads(folder.read("sweep.json"))
        name = meta.get("name", folder.path.rsplit("/", 1)[-1])
        if name in metas:
            raise AnalysisError(f"{folder}: a second sweep named {name!r}; load one of them")
        metas[name], where[name] = meta, folder
        for table in frames:
            data, _ = read_parquet(folder.fs, folder.parquet_files(table))
            if data.num_columns:  # some file was read
                frame, bad = _frame(data, name)
                frames[table].append(frame)
                non_finite += [b.assign(sweep=name, table=table) for b in bad]
    if not frames["trials"]:
        raise AnalysisError(
            f"{', '.join(map(str, folders))}: no trial has finished yet (trials/ is empty)"
        )
    config_columns = list(
        dict.fromkeys(c for meta in metas.values() for c in meta.get("config_columns", []))
    )
    trials = _stack(frames["trials"])
    return Sweep(
        trials=trials,
        metrics=_stack(frames["metrics"]) if frames.get("metrics") else _empty_steps(),
        pairs=_stack(frames["pairs"]) if frames["pairs"] else None,
        meta=metas,
        config_columns=[c for c in config_columns if c in trials],
        non_finite=pd.concat(non_finite, ignore_index=True),
        folders=where,
    )


@dataclass(frozen=True)
class Folder:
    """A folder on a local disk or in a bucket, with the filesystem that reads it."""

    fs: pafs.FileSystem = field(compare=False)
    path: str
    given: str = field(compare=False)  # as the user wrote it, for messages

    @property
    def kind(self) -> str:  # "local", "s3", ...: with the path, what tells folders apart
        return self.fs.type_name

    @classmethod
    def at(cls, given: str | Path) -> Folder:
        text = str(given)
        if "://" in text:
            fs, path = pafs.FileSystem.from_uri(text)
            return cls(fs, path.rstrip("/"), text)
        return cls(pafs.LocalFileSystem(), str(Path(text).resolve()), text)

    def __str__(self) -> str:
        return self.given

    def has_file(self, name: str) -> bool:
        return self.fs.get_file_info(f"{self.path}/{name}").type == pafs.FileType.File

    def subfolders(self) -> list[Folder]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        inside = sorted(i.path for i in infos if i.type == pafs.FileType.Directory)
        return [
            Folder(self.fs, p, f"{self.given.rstrip('/')}/{p.rsplit('/', 1)[-1]}") for p in inside
        ]

    def read(self, name: str) -> bytes:
        with self.fs.open_input_stream(f"{self.path}/{name}") as f:
            return f.read()

    def write(self, name: str, data: bytes) -> str:
        """Write `name` under a temporary name, then move it in place: readers see the
        whole file or none. Returns where it went."""
        target = f"{self.path}/{name}"
        temporary = f"{target.rsplit('/', 1)[0]}/.tmp-{uuid.uuid4().hex}"
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(temporary) as out:
            out.write(data)
        self.fs.move(temporary, target)
        return f"{self.given.rstrip('/')}/{name}"

    def parquet_files(self, table: str) -> list[str]:
        """The table's files in name order: the newest, which carries every column, first."""
        selector = pafs.FileSelector(f"{self.path}/{table}", allow_not_found=True)
        return sorted(
            i.path for i in self.fs.get_file_info(selector) if i.path.endswith(".parquet")
        )


def _sweep_folders(paths: list[str | Path]) -> list[Folder]:
    found: list[Folder] = []
    for folder in map(Folder.at, paths):
        if folder.has_file("sweep.json"):
            found.append(folder)
        elif inside := [f for f in folder.subfolders() if f.has_file("sweep.json")]:
            found += inside
        else:
            exists = folder.fs.get_file_info(folder.path).type != pafs.FileType.NotFound
            what = "holds no sweep.json, nor do its folders" if exists else "does not exist"
            raise AnalysisError(
                f"{folder}: {what}; give a sweep folder or a results root (sweep ls)"
            )
    return list({(f.kind, f.path): f for f in found}.values())


def _frame(table: pa.Table, sweep: str) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """A table as pandas with its sweep's name, and its NaN/Inf values, found while Arrow
    still tells them from nulls."""
    frame = table.to_pandas()
    frame["sweep"] = pd.Categorical.from_codes(np.zeros(len(frame), dtype=np.int8), [sweep])
    return frame, _find_non_finite(table)


_NO_VALUES = pd.DataFrame(columns=["sweep", "table", "trial_id", "attempt", "column", "value"])


def _find_non_finite(table: pa.Table) -> list[pd.DataFrame]:
    """Per float column holding NaN or Inf, those rows: trial_id, attempt, column, value
    (none at all for a clean table: `load` puts them together, once)."""
    found = []
    ids = [c for c in ("trial_id", "attempt") if c in table.column_names]
    for name in table.column_names:
        column = table[name]
        if not pa.types.is_floating(column.type) or _all_finite(column):
            continue
        bad = pc.fill_null(pc.or_(pc.is_nan(column), pc.is_inf(column)), False)
        if pc.any(bad).as_py():
            rows = table.filter(bad)
            found.append(
                rows.select(ids).to_pandas().assign(column=name, value=rows[name].to_numpy())
            )
    return found


def _all_finite(column: pa.ChunkedArray) -> bool:
    """Whether no value is NaN or infinite, in one pass over the column instead of the
    search's five: a sum of finite values is finite (if it overflows, the search decides)."""
    total = pc.sum(column).as_py()
    return total is None or math.isfinite(total)


def _stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _empty_steps() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=object) for c in ("sweep", "trial_id", "attempt", "step")}
    )


def _numeric(
    frame: pd.DataFrame, exclude: set[str] | frozenset[str], reported_nan: set[str] = frozenset()
) -> list[str]:
    """Numeric, non-boolean columns not excluded that hold a value (or a reported NaN)."""
    return [
        c
        for c in frame.columns
        if c not in exclude
        and not c.startswith("version_")
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
        and (c in reported_nan or frame[c].notna().any())
    ]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _text(value: Any) -> str:
    """32 for 32.0 (stacked sweeps turn ints to floats), 0.00312 for 0.0031200974945600206."""
    if _missing(value):
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
