"""Compaction: rewrite a sweep's tables into a few large files, atomically for readers.

The writer adds one file per flush, so a long sweep leaves thousands of small files
and every reader pays for opening them. `compact` rewrites each table into files of
about `target_bytes` (one file for most sweeps), with the same rows, values and
types as readers saw before, in the same order; `sweep run` calls it when a run ends.

Readers list a table's folder and read what they find, so renaming files one by one
would always leave a moment with rows twice or missing. Instead the compacted copy of
`<sweep>/<table>/` is built in `<sweep>/.<table>-compact/` (no reader looks there), and
the two folders are exchanged in one step (Linux renameat2 with RENAME_EXCHANGE, macOS
renamex_np with RENAME_SWAP): a reader lists either all the old files or all the new
ones. The hidden folder, which then holds the old files, is deleted. A kill at any moment
leaves at most that hidden folder, garbage either way (an unfinished copy before the
exchange, the old files after it), which `recover` deletes. A reader that listed the
folder just before the exchange and opens its files after it gets FileNotFoundError,
never wrong rows.

A run must not append while a table is rewritten: `compact` refuses while a run of the
sweep is live, and holds a lock (`<sweep>/.compact.lock`) that a starting run waits
for in `recover`. Only local storage can exchange folders, and only where the system has
one of those calls and the filesystem supports it (ext4, XFS, Btrfs and tmpfs on Linux;
APFS on macOS). Elsewhere (a bucket, another OS, an NFS mount) nothing keeps readers safe
(with files renamed one by one, some reader would get rows twice or miss some), so nothing
is compacted and the run says so in a line; the copy is not even begun where the system
lacks both calls.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from orchestrator.errors import InputError
from orchestrator.store.folder import TABLES, RunStatus, SweepStore
from orchestrator.summary import run_state

TARGET_BYTES = 128 * 2**20
ROW_GROUP_BYTES = 64 * 2**20  # rows held in memory before they are written out
SWITCH = "RAYSWEEP_COMPACT"  # "0": runs leave their tables as they are (benchmarks)
_RENAME_EXCHANGE = 2  # Linux renameat2's flag
_RENAME_SWAP = 2  # macOS renamex_np's flag
_AT_FDCWD = -100
_NOT_HERE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}  # not on this filesystem
Swap = Callable[[bytes, bytes], int]  # two paths -> 0, or -1 with the C errno set
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def compact(store: SweepStore, target_bytes: int = TARGET_BYTES) -> dict[str, tuple[int, int]]:
    """Rewrite each table of the sweep into files of about `target_bytes`; per table,
    (files before, files after). Raises InputError, with nothing changed, when the sweep
    cannot be compacted now: a live run, another compaction, storage that is not local."""
    if not store.local:
        raise InputError(f"{store.uri}: compaction works on local storage only; left as it is")
    swap = _swap_call()
    if swap is None:
        raise InputError(_cannot_swap(store.uri))
    with _lock(store, wait=False):
        _remove_hidden(store)
        _check_no_live_run(store)
        for table in TABLES:  # unreadable files go to corrupt/, not into the new files
            store.read_arrow(table, ["trial_id"])
        store.set_aside_unreadable()
        return {table: _compact_table(store, table, target_bytes, swap) for table in TABLES}


def recover(store: SweepStore) -> None:
    """Delete what a killed compaction left; wait first for a compaction under way."""
    if store.local:
        with _lock(store, wait=True):
            _remove_hidden(store)


def compact_after_run(store: SweepStore, out: TextIO | None) -> None:
    """Compaction at the end of a run, unless RAYSWEEP_COMPACT=0; a sweep that cannot be
    compacted now is left as it is, with a line on `out` saying why."""
    if os.environ.get(SWITCH) == "0":
        return
    try:
        compact(store)
    except InputError as exc:
        if out is not None:
            out.write(f"tables not compacted: {exc}\n")


def parse_size(text: str) -> int:
    """Bytes from `128MB`, `1G`, `512KiB` or `1000000` (units are powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*", text, re.IGNORECASE)
    if not match or float(match[1]) <= 0:
        raise InputError(f"--target-size {text!r}: give a size such as 128MB, 1GB or 500000")
    return max(int(float(match[1]) * _UNITS[match[2].lower()]), 1)


def _hidden(store: SweepStore, table: str) -> str:
    return f"{store.path}/.{table}-compact"


@contextlib.contextmanager
def _lock(store: SweepStore, wait: bool) -> Iterator[None]:
    with open(f"{store.path}/.compact.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise InputError(
                f"{store.uri}: another compaction of this sweep is under way"
            ) from None
        yield  # the lock goes with the closed file


def _remove_hidden(store: SweepStore) -> None:
    for table in TABLES:
        shutil.rmtree(_hidden(store, table), ignore_errors=True)


def _check_no_live_run(store: SweepStore) -> None:
    for run in (store.read_meta() or {}).get("runs", []):
        if run_state(run) == RunStatus.RUNNING:
            raise InputError(
                f"{store.uri}: run {run['run_id']} (pid {run.get('pid')} on {run.get('host')}) "
                "is still writing this sweep; compact it when the run has ended"
            )


def _compact_table(store: SweepStore, table: str, target_bytes: int, swap: Swap) -> tuple[int, int]:
    files = store._files(table)
    groups = _groups(files, target_bytes)
    if len(groups) == len(files):
        return len(files), len(files)
    hidden = _hidden(store, table)
    os.mkdir(hidden)
    try:  # the hidden folder goes in the end: the unfinished copy, or after the swap the old files
        schema = pq.read_schema(files[0])  # the newest file's: the union, as readers take it
        for group in groups:
            _write(group, schema, f"{hidden}/{_name(group[0])}")
        _fsync(hidden)
        _exchange(swap, hidden, store.table_dir(table))
        _fsync(store.path)
    finally:
        shutil.rmtree(hidden, ignore_errors=True)
    return len(files), len(groups)


def _groups(files: list[str], target_bytes: int) -> list[list[str]]:
    """Consecutive files (in name order, newest first) in runs of about target_bytes."""
    groups: list[list[str]] = []
    size = target_bytes
    for file in files:
        if size >= target_bytes:
            groups.append([])
            size = 0
        groups[-1].append(file)
        size += os.path.getsize(file)
    return groups


def _name(first: str) -> str:
    """A compacted file sorts where its newest input did: after files appended later."""
    stamp = Path(first).name.split("-", 1)[0]
    return f"{stamp}-{uuid.uuid4().hex[:8]}.parquet"


def _write(files: list[str], schema: pa.Schema, path: str) -> None:
    """One file of `files`' rows in their order, read with the union schema as a reader of
    the whole folder reads them (columns a file lacks null, narrower types cast)."""
    batches = ds.dataset(files, schema=schema, format="parquet").to_batches()
    with open(path, "wb") as out:
        with pq.ParquetWriter(out, schema) as writer:
            held: list[pa.RecordBatch] = []
            size = 0
            for batch in batches:
                held.append(batch)
                size += batch.nbytes
                if size >= ROW_GROUP_BYTES:
                    writer.write_table(pa.Table.from_batches(held, schema))
                    held, size = [], 0
            if held:
                writer.write_table(pa.Table.from_batches(held, schema))
        out.flush()
        os.fsync(out.fileno())


def _swap_call() -> Swap | None:
    """The C library's call that swaps two folders in one step: Linux renameat2 with
    RENAME_EXCHANGE (glibc 2.28 on), macOS renamex_np with RENAME_SWAP; None without."""
    libc = _libc()
    if (renameat2 := getattr(libc, "renameat2", None)) is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p] * 2 + [ctypes.c_uint]
        return lambda a, b: renameat2(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE)
    if (renamex_np := getattr(libc, "renamex_np", None)) is not None:
        renamex_np.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        return lambda a, b: renamex_np(a, b, _RENAME_SWAP)
    return None


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _exchange(swap: Swap, a: str, b: str) -> None:
    """Swap two folders in one step; InputError where their filesystem cannot."""
    if swap(a.encode(), b.encode()) == 0:
        return
    code = ctypes.get_errno()
    if code not in _NOT_HERE:
        raise OSError(code, os.strerror(code), b)
    raise InputError(_cannot_swap(b))


def _cannot_swap(where: str) -> str:
    return (
        f"{where}: this system cannot swap two folders in one step (Linux renameat2, macOS "
        "renamex_np, on a filesystem that supports it), which compaction needs to stay "
        "atomic for readers; left as it is"
    )


def _fsync(folder: str) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
