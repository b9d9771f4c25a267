"""Buffers a run's rows and writes them to the sweep's tables.

Rows are flushed at most every `flush_s` seconds (and at the end), so many trials
reporting at once cost a few file writes, and a killed driver loses at most that much.
Steps go before rows: a trial's row never precedes its steps (orchestrator/store/leftovers.py
relies on it).
"""

from __future__ import annotations

import time
from typing import Any

from analysis.tables import COLUMN_TYPES
from orchestrator.faults.abort import Abort
from orchestrator.store.folder import StorageFull, SweepStore

WRITE_ORDER = ("metrics", "trials")


class TableWriter:
    """Appends rows to `metrics/` and `trials/`; once the storage is full, writes nothing
    more and stops the sweep (the attempts whose rows are missing run again next time)."""

    def __init__(self, store: SweepStore, abort: Abort, flush_s: float = 1.0) -> None:
        self.store = store
        self.abort = abort
        self.flush_s = flush_s
        self.written: list[dict[str, Any]] = []  # trial rows this run wrote, for the summary
        self._buffers: dict[str, list[dict[str, Any]]] = {table: [] for table in WRITE_ORDER}
        self._last_flush = time.monotonic()

    def add(self, table: str, row: dict[str, Any]) -> None:
        self._buffers[table].append(row)

    def maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        for table in WRITE_ORDER:
            rows, self._buffers[table] = self._buffers[table], []
            if not isinstance(self.abort.reason, StorageFull):
                with self.abort.on(StorageFull):
                    self.store.append(table, rows, COLUMN_TYPES[table])
                    if table == "trials":
                        self.written += rows
        self._last_flush = time.monotonic()

    def write_now(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Rows written at once, not counted as this run's (a killed driver's leftovers)."""
        self.store.append(table, rows, COLUMN_TYPES[table])
