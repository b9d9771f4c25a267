"""What a killed driver leaves in a sweep's folder, found and set right by the next run.

The writer writes a running trial's steps before the trial's row (the row comes when the
attempt ends), so a driver killed in between leaves steps in metrics/ whose attempt has
no row in trials/. The next run numbers its attempts past every attempt seen in either
table, so (trial_id, attempt, step) never repeats, and records each such attempt as
failed, saying why: every attempt in metrics/ has its row, and readers that take a
trial's successful attempt never mix its steps with those of the one that died.
A write cut off by the kill leaves a temporary file (`.tmp-...`); the next run removes it.
"""

from __future__ import annotations

import pandas as pd
import pyarrow.fs as pafs

from orchestrator.store.folder import SweepStore


def left_behind(trials: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Attempts with steps but no row: trial_id, attempt, and the times of their first
    and last steps (seconds)."""
    columns = ["trial_id", "attempt", "first", "last"]
    if steps.empty:
        return pd.DataFrame(columns=columns)
    recorded = set(zip(trials["trial_id"], trials["attempt"], strict=True))
    seen = steps.groupby(["trial_id", "attempt"], as_index=False)["time"].agg(["min", "max"])
    keys = zip(seen["trial_id"], seen["attempt"], strict=True)
    orphans = seen[[key not in recorded for key in keys]]
    seconds = {
        c: pd.to_datetime(orphans[c], utc=True).map(pd.Timestamp.timestamp) for c in ("min", "max")
    }
    return pd.DataFrame(
        {
            "trial_id": orphans["trial_id"],
            "attempt": orphans["attempt"].astype(int),
            "first": seconds["min"],
            "last": seconds["max"],
        },
        columns=columns,
    ).reset_index(drop=True)


def next_attempts(trials: pd.DataFrame, steps: pd.DataFrame) -> dict[str, int]:
    """Per trial id, the attempt number after every one either table has seen."""
    both = pd.concat([trials[["trial_id", "attempt"]], steps[["trial_id", "attempt"]]])
    if both.empty:
        return {}
    return (both.groupby("trial_id")["attempt"].max() + 1).astype(int).to_dict()


def remove_temporary(store: SweepStore) -> None:
    """Delete the temporary files of writes that a kill cut off."""
    for folder in (store.path, store.table_dir("trials"), store.table_dir("metrics")):
        selector = pafs.FileSelector(folder, allow_not_found=True)
        for info in store.fs.get_file_info(selector):
            if info.type == pafs.FileType.File and info.base_name.startswith(".tmp-"):
                store.fs.delete_file(info.path)
