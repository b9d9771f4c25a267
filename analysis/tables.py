"""Reading a sweep table's Parquet files, some of which may be unreadable.

A file cut short (a copy interrupted, a disk error) must not stop `sweep status`,
`sweep report`, `analysis.load` or a resumed run: every reader goes through
`read_parquet`, which reads the files in one call and, only when that fails, file by
file, leaving out each file it cannot read with an `UnreadableFileWarning` naming it.

The columns come from the newest readable file: the store writes each file with the
union of the columns of all files before it (orchestrator/store.py), so that file's
schema is the union of every readable file's, promoted as the store promotes them
(int to float, clashing types to text), even when the newest file is the bad one.
"""

from __future__ import annotations

import warnings

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# What a file that is not (or no longer) Parquet raises: ArrowInvalid, or OSError for a
# footer that cannot be decoded.
UNREADABLE = (pa.ArrowException, OSError)


class UnreadableFileWarning(UserWarning):
    """A table's file could not be read and is left out of what was read."""


def read_parquet(
    fs: pafs.FileSystem, files: list[str], columns: list[str] | None = None
) -> tuple[pa.Table, list[str]]:
    """The files (newest first) as one table, and the files left out as unreadable.

    With no readable file, an empty table of the `columns` asked (typed null)."""
    if not files:
        return _empty(columns), []
    try:
        return pq.read_table(files, filesystem=fs, columns=columns), []
    except UNREADABLE:
        return _read_each(fs, files, columns)


def warn_unreadable(path: str, error: BaseException) -> None:
    warnings.warn(
        f"{path} cannot be read ({error}); it is left out, with its rows. An interrupted "
        "copy or a disk error may have cut it short: put a good copy in its place if you "
        "have one. Trials whose only successful row it held count as not run: the next "
        "`sweep run` of this sweep runs them again and moves the file to its corrupt/ folder.",
        UnreadableFileWarning,
        stacklevel=2,
    )


def _read_each(
    fs: pafs.FileSystem, files: list[str], columns: list[str] | None
) -> tuple[pa.Table, list[str]]:
    """Read file by file with the newest readable file's schema, skipping bad files."""
    schema: pa.Schema | None = None
    tables, bad = [], []
    for path in files:
        try:
            schema = schema or pq.read_schema(path, filesystem=fs)
            tables.append(pq.read_table(path, filesystem=fs, schema=schema, columns=columns))
        except UNREADABLE as exc:
            warn_unreadable(path, exc)
            bad.append(path)
    return (pa.concat_tables(tables) if tables else _empty(columns)), bad


def _empty(columns: list[str] | None) -> pa.Table:
    return pa.table({c: pa.array([], pa.null()) for c in columns or []})
