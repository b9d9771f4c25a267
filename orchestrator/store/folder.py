"""A sweep's folder: Parquet tables, artifacts and sweep.json, on a local disk or a bucket.

    <storage>/<sweep>/trials/*.parquet    one row per trial attempt
    <storage>/<sweep>/metrics/*.parquet   one row per reported step
    <storage>/<sweep>/artifacts/<trial_id>/<name>
    <storage>/<sweep>/sweep.json          spec snapshot and the runs so far
    <storage>/<sweep>/corrupt/<table>/    files a run found unreadable, moved out of the way

Tables are append-only: each flush adds one file, written under a temporary name
and renamed, so a crash never leaves a half file. Files are named so the newest
sorts first, and each new file carries the union of all columns so far: readers
that take the schema from the first file (pandas, pyarrow) see every column,
with nulls where older files lack one.

A file that cannot be read (cut short by a copy or a disk error) is left out with a
warning (analysis/tables.py). A full disk raises StorageFull and leaves no partial file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import time
import uuid
import warnings
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis.tables import UNREADABLE, UnreadableFileWarning, read_parquet, warn_unreadable
from orchestrator.errors import InputError

TABLES = ("trials", "metrics")
_NAME_SPAN = 10**16  # microseconds; inverted timestamps keep 16 digits until year 2286
_FULL = (errno.ENOSPC, errno.EDQUOT)


class RunStatus(str, Enum):
    """How a run of a sweep stands, in sweep.json's list of runs."""

    RUNNING = "running"
    FINISHED = "finished"  # its trials all ended
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: the next run goes on
    ABORTED = "aborted"  # the sweep stopped itself (storage full, trials that cannot start)
    DIED = "died"  # never written: marked running, but its driver is gone (summary.run_state)

    def __str__(self) -> str:
        return self.value


class StorageFull(OSError):
    """The disk holding a sweep's folder is full: a write failed and left nothing behind."""


class SweepStore:
    """Reads and writes one sweep's folder under a storage root (path or URI)."""

    def __init__(self, storage: str, sweep: str) -> None:
        self.uri = _join(storage if "://" in storage else str(Path(storage).resolve()), sweep)
        self.fs, self.path = pafs.FileSystem.from_uri(self.uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self._schemas: dict[str, pa.Schema | None] = {}
        self.unreadable: set[str] = set()  # table files reads left out; see set_aside_unreadable

    @property
    def root(self) -> str:
        """The storage the sweep's folder is in."""
        return self.uri.rsplit("/", 1)[0]

    def table_dir(self, table: str) -> str:
        return _join(self.path, table)

    def artifact_path(self, trial_id: str, name: str) -> str:
        return _join(self.path, artifact_file(trial_id, name))

    def exists(self) -> bool:
        return self.fs.get_file_info(_join(self.path, "sweep.json")).type == pafs.FileType.File

    def check_writable(self) -> None:
        """Raise InputError if the sweep folder could not be created; leaves nothing behind."""
        if not self.local:
            return
        folder = Path(self.path)
        while not folder.exists():
            folder = folder.parent
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as exc:
            raise InputError(
                f"storage {self.uri}: cannot write under {folder} ({exc.strerror or exc}); "
                "choose another folder with `storage:` in the spec or --set storage=DIR"
            ) from None

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a file atomically: readers see the old file or the whole new one.
        StorageFull when the disk is full."""
        try:
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            if self.local:
                _write_local(path, data)
            else:  # an object store's PUT is atomic by itself
                with self.fs.open_output_stream(path) as out:
                    out.write(data)
        except OSError as exc:
            if exc.errno not in _FULL:
                raise
            raise StorageFull(
                f"no space left on the disk holding the sweep folder {self.uri} (writing "
                f"{path.rsplit('/', 1)[-1]}): free some space there, then run the same "
                "`sweep run` again: the trials that finished are kept, the others run again",
            ) from exc

    def append(
        self, table: str, rows: list[dict[str, Any]], types: dict[str, pa.DataType] | None = None
    ) -> None:
        """Add rows to a table as one new Parquet file; `types` fixes some columns' types."""
        if not rows:
            return
        new = _to_arrow(rows, types or {})
        current = self.schema(table)
        if current is not None:
            new = _conform(new, _union(current, new.schema))
        sink = pa.BufferOutputStream()
        pq.write_table(new, sink)
        stamp = _NAME_SPAN - time.time_ns() // 1000
        name = f"{stamp:016d}-{uuid.uuid4().hex[:8]}.parquet"
        self.write_bytes(_join(self.table_dir(table), name), sink.getvalue().to_pybytes())
        self._schemas[table] = new.schema

    def schema(self, table: str) -> pa.Schema | None:
        """The union schema so far: that of the newest readable file."""
        if table not in self._schemas:
            self._schemas[table] = self._newest_schema(table)
        return self._schemas[table]

    def _newest_schema(self, table: str) -> pa.Schema | None:
        for path in self._files(table):
            try:
                return pq.read_schema(path, filesystem=self.fs)
            except UNREADABLE as exc:
                warn_unreadable(path, exc)
                self.unreadable.add(path)
        return None

    def read(self, table: str, columns: list[str] | None = None) -> pd.DataFrame:
        """A whole table as a DataFrame (empty when nothing was written yet)."""
        return self.read_arrow(table, columns).to_pandas()

    def read_arrow(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """A whole table as Arrow, which keeps null (not reported) apart from NaN."""
        data, bad = read_parquet(self.fs, self._files(table), columns)
        self.unreadable.update(bad)
        return data

    def set_aside_unreadable(self) -> None:
        """Move the table files that reads found unreadable to corrupt/<table>/, with a
        warning: kept for the user, no longer read; rows written later carry the columns
        of the readable files."""
        for path in sorted(self.unreadable):
            folder, name = path.rsplit("/", 1)
            target = _join(self.path, "corrupt", folder.rsplit("/", 1)[-1], name)
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            self.fs.move(path, target)
            warnings.warn(
                f"moved {path}, which cannot be read, to {target}; the trials whose only "
                "successful row it held run again",
                UnreadableFileWarning,
                stacklevel=2,
            )
        self.unreadable.clear()

    def read_meta(self) -> dict[str, Any] | None:
        path = _join(self.path, "sweep.json")
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path) as f:
            return json.loads(f.read())

    def write_meta(self, meta: dict[str, Any]) -> None:
        data = json.dumps(meta, indent=2, default=str).encode()
        self.write_bytes(_join(self.path, "sweep.json"), data)

    def begin_run(self, run: dict[str, Any], sweep: dict[str, Any]) -> None:
        """Record in sweep.json that a run began: `run` (its id, host, git state, ...) joins
        the list of runs; `sweep` (experiment, spec, ...) updates what the sweep is."""
        meta = self.read_meta() or {"name": run["sweep"], "created_at": now(), "runs": []}
        meta.update(sweep, updated_at=now())
        meta["runs"].append(run)
        self.write_meta(meta)

    def end_run(self, run: dict[str, Any], **ended: Any) -> None:
        """Record how the run ended (its status and counts) in its entry of sweep.json."""
        meta = self.read_meta() or {"runs": [run]}
        for entry in meta["runs"]:
            if entry["run_id"] == run["run_id"]:
                entry.update(finished_at=now(), **ended)
        meta["updated_at"] = now()
        self.write_meta(meta)

    def _files(self, table: str) -> list[str]:
        selector = pafs.FileSelector(self.table_dir(table), allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(
            i.path
            for i in infos
            if i.base_name.endswith(".parquet")
            and i.base_name[0] != "."
            and i.path not in self.unreadable
        )


def _write_local(path: str, data: bytes) -> None:
    """Write under a temporary name, then rename; a failed write removes its temporary file."""
    tmp = f"{path.rsplit('/', 1)[0]}/.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def now() -> str:
    """The time of day in sweep.json: UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def artifact_file(trial_id: str, name: str) -> str:
    """Where a trial's artifact `name` goes, inside its sweep's folder."""
    return _join("artifacts", trial_id, name)


def _join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts)


def _to_arrow(rows: list[dict[str, Any]], types: dict[str, pa.DataType]) -> pa.Table:
    """Rows to a table; a column of mixed types becomes strings rather than an error."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    arrays = []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            arrays.append(pa.array(values, type=types.get(name)))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(_as_text(values))
    return pa.Table.from_arrays(arrays, names=names)


def _union(old: pa.Schema, new: pa.Schema) -> pa.Schema:
    """Old columns first, new ones after; int widens to float, clashes become strings."""
    fields = []
    for field in old:
        other = new.field(field.name) if field.name in new.names else None
        fields.append(
            field if other is None else pa.field(field.name, _wider(field.type, other.type))
        )
    fields += [f for f in new if f.name not in old.names]
    return pa.schema(fields)


def _wider(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    try:
        return (
            pa.unify_schemas(
                [pa.schema([("x", a)]), pa.schema([("x", b)])], promote_options="permissive"
            )
            .field("x")
            .type
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.string()


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(len(table), field.type))
        elif table.schema.field(field.name).type == field.type:
            columns.append(table[field.name])
        elif pa.types.is_string(field.type):
            columns.append(_as_text(table[field.name].to_pylist()))
        else:
            columns.append(table[field.name].cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _as_text(values: list[Any]) -> pa.Array:
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def store_at(folder: str) -> SweepStore:
    """The store of a sweep folder given as a path (relative to where you run) or URI."""
    root, _, sweep = folder.rstrip("/").rpartition("/")
    return SweepStore(root or ".", sweep)
