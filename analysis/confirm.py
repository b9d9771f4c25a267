"""Configs confirmed on fresh seeds: `sweep confirm` picks the best configs of a sweep and
runs them again, on seeds the sweep never used, as a linked sweep in the same storage
(its spec says `confirms: {sweep, metric, mode, top}`); the report of the first sweep
then shows both estimates side by side.

The best configs of a sweep are picked on its own data, so their means and intervals
there flatter them: the pick favours the configs whose seeds happened to land well (the
winner's curse). The linked sweep's seeds played no part in the pick, so its estimates
are unbiased by the selection.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.configs import rank_configs, t_half_width
from analysis.document import Section, fmt
from analysis.errors import AnalysisError
from analysis.sweep import Folder, Sweep, label_rows, load

TITLE = "Confirmation on fresh seeds"
GRID_ENTRY = "confirmed"  # the linked sweep's grid entry: one mapping per confirmed config


def config_keys(meta: dict[str, Any], frame: pd.DataFrame) -> list[str]:
    """A sweep's config keys without the seed (sweep.json's config_columns), those in `frame`."""
    return [c for c in meta.get("config_columns") or [] if c != "seed" and c in frame]


def native(value: Any) -> Any:
    """A value of a trials table as plain Python (YAML writes it): numpy scalars and
    arrays to numbers and lists; None for a missing value."""
    if isinstance(value, np.ndarray):
        return [native(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, dict):
        return {k: native(v) for k, v in value.items()}
    if isinstance(value, list):
        return [native(v) for v in value]
    return value


def config_key(row: pd.Series | dict[str, Any], keys: list[str]) -> str:
    """What identifies a config across two sweeps: its values of `keys`, missing ones left
    out, a whole float equal to the int (a table with a missing value turns ints to floats)."""

    def norm(value: Any) -> Any:
        value = native(value)
        return int(value) if isinstance(value, float) and value.is_integer() else value

    present = {k: norm(row[k]) for k in keys if k in row and native(row[k]) is not None}
    return json.dumps(present, sort_keys=True, default=str)


def rank(ok: pd.DataFrame, keys: list[str], metric: str, mode: str) -> pd.DataFrame:
    """The configs of one sweep's successful trials (`ok`, one row per trial), ranked by
    the mean of `metric` over their seeds, best first (`mode` min or max): per config its
    `keys`, `value` (that mean; NaN when a seed's value is NaN or missing, and then the
    config is last, unranked), n, mean, low/high (95% t-interval) and rank
    (`analysis.configs.rank_configs`)."""
    if "config_id" not in ok or ok["config_id"].isna().any():  # an older sweep: by its values
        ok = ok.assign(config_id=[config_key(row, keys) for _, row in ok.iterrows()])
    return rank_configs(ok, metric, mode, "mean", keys)


def ranked_configs(sweep: Sweep, metric: str, mode: str) -> tuple[pd.DataFrame, list[str]]:
    """`rank` over the successful trials of a one-sweep `Sweep`, and its config keys."""
    if len(sweep.meta) != 1:
        raise AnalysisError(f"{sweep.name}: several sweeps; rank the configs of one")
    if metric not in sweep.ok:
        raise AnalysisError(f"{sweep.name}: no successful trial reported {metric!r}")
    keys = config_keys(next(iter(sweep.meta.values())), sweep.ok)
    return rank(sweep.ok, keys, metric, mode), keys


def confirming(folder: Folder, name: str) -> list[Folder]:
    """The sweeps beside `folder` (in its storage) whose spec says `confirms.sweep: name`."""
    parent_path, _, _ = folder.path.rpartition("/")
    given = str(folder.given).rstrip("/").rpartition("/")[0] or "."
    found = []
    for other in Folder(folder.fs, parent_path or "/", given).subfolders():
        if other.path == folder.path or not other.has_file("sweep.json"):
            continue
        try:
            meta = json.loads(other.read("sweep.json"))
        except (OSError, ValueError):
            continue
        confirms = (meta.get("spec") or {}).get("confirms") or {}
        if isinstance(confirms, dict) and confirms.get("sweep") == name:
            found.append(other)
    return found


def confirmation_sections(sweep: Sweep) -> list[Section]:
    """Per sweep of `sweep` that a sweep in its storage confirms, the section comparing
    the original estimates of the confirmed configs with the fresh-seed ones."""
    several = len(sweep.meta) > 1
    return [
        _section(sweep, name, other, several)
        for name, folder in sweep.folders.items()
        for other in confirming(folder, name)
    ]


def _labels(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """Per row, `key=value ...` over `columns` (missing values left out)."""
    if len(columns) != 1:
        return label_rows(frame, columns).tolist()
    return [f"{columns[0]}={text}" for text in label_rows(frame, columns)]


def _estimate(values: pd.Series) -> tuple[float, float, float, int]:
    have = [float(v) for v in values if not pd.isna(v)]
    mean = math.fsum(have) / len(have) if have else math.nan
    half = t_half_width(have)
    return mean, mean - half, mean + half, len(have)


def _cell(mean: float, low: float, high: float, n: int) -> str:
    if n < 2:
        return f"{fmt(mean)} (no interval)"
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def _section(sweep: Sweep, name: str, other: Folder, several: bool) -> Section:
    title = TITLE + (f" ({name})" if several else "")
    try:
        fresh = load(other.given, steps=False)
    except AnalysisError:
        where = other.path.rsplit("/", 1)[-1]
        return Section(title).add(
            f"Sweep `{where}` confirms {name}, but none of its trials has finished yet."
        )
    fresh_name, fresh_meta = next(iter(fresh.meta.items()))
    confirms = fresh_meta["spec"]["confirms"]
    metric, mode, top = confirms["metric"], confirms["mode"], confirms["top"]
    original = sweep.ok[sweep.ok["sweep"] == name]
    section = Section(title)
    if metric not in original or metric not in fresh.ok:
        return section.add(f"`{fresh_name}` confirms {name} on {metric!r}, which it lacks.")
    own_keys, keys = config_keys(sweep.meta[name], original), config_keys(fresh_meta, fresh.ok)
    ranked = rank(original, own_keys, metric, mode)
    valued = ranked[ranked["rank"].notna()]
    rank_of = {config_key(row, own_keys): row["rank"] for _, row in valued.iterrows()}
    # each original trial: its config as the fresh sweep's keys see it, its rank, its label
    original = original.assign(
        _key=[config_key(row, keys) for _, row in original.iterrows()],
        _rank=[rank_of.get(config_key(row, own_keys)) for _, row in original.iterrows()],
        _label=_labels(original, [c for c in sweep.group_columns if c != "sweep"]),
    )
    fresh_ok = fresh.ok.assign(_key=[config_key(row, keys) for _, row in fresh.ok.iterrows()])
    rows = []
    for key, trials in fresh_ok.groupby("_key", sort=False):
        before = original[original["_key"] == key]
        old, new = _estimate(before[metric]), _estimate(trials[metric])
        rows.append(
            {
                "config": before["_label"].iloc[0] if len(before) else _labels(trials, keys)[0],
                "rank": before["_rank"].iloc[0] if len(before) else None,
                f"{name}: mean [95% CI] (selected: best {top} of {len(valued)})": _cell(*old),
                "n": old[3],
                "fresh seeds: mean [95% CI]": _cell(*new),
                "n fresh": new[3],
                "fresh - original": new[0] - old[0],
                "_fresh": new[0],
            }
        )
    table = pd.DataFrame(rows).sort_values("rank", na_position="last", kind="stable")
    seeds = sorted({int(s) for s in fresh.ok["seed"].dropna()})
    section.add(
        f"`{fresh_name}` ran the {top} best of the {len(valued)} configs of {name} by mean "
        f"**{metric}** over seeds ({mode} is better) again, on seeds {name} never used "
        f"({', '.join(map(str, seeds))}; `sweep confirm`). The original estimates are "
        "selected: each config was picked because its mean over those same seeds was among "
        "the best, so that mean and its 95% t-interval flatter it. The fresh-seed estimate "
        "played no part in the pick, so it is unbiased by the selection: read it as what the "
        "config does, and the difference as how much the pick flattered it (plus noise)."
    )
    if len(table) > 1:
        best = table.sort_values("_fresh", ascending=mode == "min").iloc[0]
        section.add(
            f"On the fresh seeds the best of them is **{best['config']}** "
            f"(mean {fmt(best['_fresh'])})."
        )
    table["rank"] = [fmt(r) if r is not None and not pd.isna(r) else "-" for r in table["rank"]]
    return section.add(table.drop(columns="_fresh"))
