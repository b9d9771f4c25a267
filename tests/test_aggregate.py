"""Aggregates over seeds on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.aggregates import aggregate, curve


def test_mean_spread_and_t_interval_of_a_known_sample():
    df = pd.DataFrame({"act": ["a"] * 3 + ["b"] * 2, "loss": [1.0, 2.0, 3.0, 5.0, np.nan]})
    out = aggregate(df, ["act"], ["loss"]).set_index("act")
    a = out.loc["a"]
    assert (a["n"], a["mean"], a["std"], a["min"], a["max"]) == (3, 2.0, 1.0, 1.0, 3.0)
    assert a["sem"] == pytest.approx(1 / math.sqrt(3))
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2), from tables
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((2 - half, 2 + half))
    b = out.loc["b"]  # one value left after dropping NaN: no spread, not zero spread
    assert b["n"] == 1 and b["mean"] == 5.0 and math.isnan(b["std"]) and math.isnan(b["ci_low"])


def test_groups_with_missing_keys_are_kept():
    df = pd.DataFrame({"act": ["relu", "smelu", "smelu"], "beta": [None, 0.5, 1.0], "x": [1, 2, 3]})
    out = aggregate(df, ["act", "beta"], ["x"])
    assert len(out) == 3 and out["n"].tolist() == [1, 1, 1]


def test_curves_keep_groups_in_the_order_of_their_values():
    df = pd.DataFrame({"width": [128, 32, 64] * 2, "lr": [0.1] * 3 + [0.2] * 3, "x": range(6)})
    table = curve(df, "lr", ["width"], "x")
    assert list(dict.fromkeys(table["group"])) == ["32", "64", "128"]  # not "128" < "32"
    assert table.set_index(["group", "lr"]).loc[("32", 0.2), "mean"] == 4
