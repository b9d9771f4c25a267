"""Figures, drawn on matplotlib `Figure` objects (no pyplot, no display needed).

Each function takes tidy frames and returns a Figure with a title, labelled
axes (units where known) and a legend; `png` renders it, `save` writes it to a file.
Long legends are cut to MAX_GROUPS lines, and the title says how many groups were
left out. `sketch(function, ...)` defers a figure: a report draws its sketches in
helper processes (analysis.painters), so this module imports no scipy, which they
would pay for.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.distributions import fit_normal

MAX_GROUPS = 8
MIN_FIT = 3  # fewer values than this get a histogram but no fitted normal
SIZE = (7.5, 4.5)
DPI = 100


@dataclass(frozen=True, eq=False)
class Sketch:
    """A figure not drawn yet: a function of this module and its arguments (frames,
    arrays, text), so it pickles and can be drawn in another process. Each sketch is
    its own figure: equal only to itself."""

    function: Callable[..., Figure]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def draw(self) -> Figure:
        return self.function(*self.args, **self.kwargs)


def sketch(function: Callable[..., Figure], *args: Any, **kwargs: Any) -> Sketch:
    """`function(*args, **kwargs)`, drawn later: `sketch(distribution, values, "loss")`."""
    return Sketch(function, args, kwargs)


def axis_label(metric: str, unit: str) -> str:
    return f"{metric} ({unit})" if unit else metric


def distribution(values: dict[str, np.ndarray], metric: str, unit: str = "") -> Figure:
    """Overlaid density histograms per group, each with its fitted normal (mu, sigma)."""
    fig = Figure(figsize=SIZE, layout="constrained")
    ax = fig.add_subplot()
    shown = dict(list(values.items())[:MAX_GROUPS])
    finite = [v[np.isfinite(v)] for v in shown.values()]
    pooled = np.concatenate([*finite, []]) if any(len(v) for v in finite) else np.zeros(1)
    pad = 0.2 * np.ptp(pooled) or max(abs(float(pooled.mean())) * 0.05, 1e-3)
    limits = (float(pooled.min() - pad), float(pooled.max() + pad))
    grid = np.linspace(*limits, 200)
    bins = np.histogram_bin_edges(pooled, bins=min(30, max(6, len(pooled) // 4)), range=limits)
    for index, (name, data) in enumerate(zip(shown, finite, strict=True)):
        color = f"C{index}"
        if len(data):  # one filled outline per group, not a rectangle per bin: as drawn
            ax.hist(data, bins=bins, density=True, alpha=0.35, color=color, histtype="stepfilled")
        mu, sigma = fit_normal(data)
        if len(data) >= MIN_FIT and sigma > 0:
            ax.plot(
                grid,
                _normal_pdf(grid, mu, sigma),
                color=color,
                lw=2,
                label=f"{name} (n={len(data)}): μ={mu:.4g}, σ={sigma:.3g}",
            )
        else:
            why = f"n < {MIN_FIT}, not fitted" if len(data) < MIN_FIT else "no spread to fit"
            ax.plot([], [], color=color, label=f"{name} (n={len(data)}): {why}")
    ax.set_xlabel(axis_label(metric, unit))
    ax.set_ylabel("probability density")
    ax.set_title(_titled(f"Distribution of {metric} per group, with fitted normals", values))
    ax.legend(fontsize="small")
    return fig


def _normal_pdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """scipy.stats.norm.pdf(x, mu, sigma) written out, to the same bits: no scipy here."""
    z = (x - mu) / sigma
    return np.exp(-(z**2) / 2.0) / np.sqrt(2 * np.pi) / sigma


def band(
    table: pd.DataFrame,
    x: str,
    metric: str,
    unit: str = "",
    x_unit: str = "",
    by: Sequence[str] = (),
) -> Figure:
    """Mean and 95% interval across seeds against `x`, one line per `group` of `table`
    (rows of analysis.aggregates.curve: group, x, n, mean, ci_low, ci_high); `by` names
    the columns the group labels come from (the legend's title when there is one)."""
    fig = Figure(figsize=SIZE, layout="constrained")
    what = "per step" if x == "step" else f"against {x}"
    title = _titled(f"{metric} {what}: mean and 95% interval across seeds", table["group"].unique())
    _draw_band(fig.add_subplot(), table, x, metric, title, unit, x_unit, by)
    return fig


def bands(
    panels: list[tuple[pd.DataFrame, str, str]], title: str, titles: Sequence[str] = ()
) -> Figure:
    """Several `band` panels side by side: (table, x, metric) each, as seed 001's
    acceptance rate against each threshold; `titles` names the panels."""
    fig = Figure(figsize=(6 * len(panels), 4.5), layout="constrained")
    for index, (table, x, metric) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), index + 1)
        name = titles[index] if titles else f"{metric} against {x}"
        _draw_band(ax, table, x, metric, name)
    fig.suptitle(f"{title}: mean and 95% interval")
    return fig


def _draw_band(
    ax: Axes,
    table: pd.DataFrame,
    x: str,
    metric: str,
    title: str,
    unit: str = "",
    x_unit: str = "",
    by: Sequence[str] = (),
) -> None:
    groups = list(dict.fromkeys(table["group"]))
    for index, name in enumerate(groups[:MAX_GROUPS]):
        rows = table[table["group"] == name].sort_values(x)
        color = f"C{index}"
        ax.plot(
            rows[x],
            rows["mean"],
            color=color,
            marker="o" if len(rows) < 20 else None,
            ms=4,
            label=f"{name} (n={int(rows['n'].max())})",
        )
        ax.fill_between(rows[x], rows["ci_low"], rows["ci_high"], color=color, alpha=0.2, lw=0)
    ax.set_xlabel(axis_label(x, x_unit))
    ax.set_ylabel(axis_label(metric, unit))
    if _spans_decades(table[x]):
        ax.set_xscale("log")
    ax.set_title(title)
    if len(groups) > 1 or groups[0] != "":
        ax.legend(fontsize="small", title=by[0] if len(by) == 1 else None)
    ax.grid(alpha=0.3)


def means(panels: dict[str, tuple[pd.DataFrame, str]], title: str) -> Figure:
    """One panel per metric: each group's mean with its 95% interval (rows: group, mean,
    ci_low, ci_high, n); `panels` maps metric -> (rows, axis label). Panels share the
    group axis, labelled on the left."""
    order = list(dict.fromkeys(g for rows, _ in panels.values() for g in rows["group"]))
    columns = min(len(panels), 3)
    rows_n = int(np.ceil(len(panels) / columns))
    fig = Figure(
        figsize=(4.2 * columns + 2.5, 0.9 + max(2.4, 0.32 * len(order)) * rows_n),
        layout="constrained",
    )
    y = np.arange(len(order))[::-1]
    for index, (metric, (rows, label)) in enumerate(panels.items()):
        rows = rows.set_index("group").reindex(order)
        ax = fig.add_subplot(rows_n, columns, index + 1)
        errors = np.vstack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]])
        ax.errorbar(rows["mean"], y, xerr=np.nan_to_num(errors), fmt="o", color="C0", capsize=3)
        ax.set_yticks(y, order if index % columns == 0 else [""] * len(y), fontsize="small")
        ax.set_ylim(-0.5, len(order) - 0.5)
        ax.set_xlabel(label)
        ax.set_title(metric)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    return fig


def bars(
    table: pd.DataFrame,
    title: str,
    label: str,
    reference: float | None = None,
    limits: tuple[float, float] | None = None,
) -> Figure:
    """Grouped bars: one cluster per metric, one bar per group side by side, each with its
    95% interval (rows: metric, group, mean, ci_low, ci_high, n); a dashed line at
    `reference` (chance, say); intervals cut at `limits` (0 and 1 for a proportion)."""
    if limits is not None:
        table = table.assign(
            ci_low=table["ci_low"].clip(*limits), ci_high=table["ci_high"].clip(*limits)
        )
    metrics = list(dict.fromkeys(table["metric"]))
    groups = list(dict.fromkeys(table["group"]))[:MAX_GROUPS]
    fig = Figure(
        figsize=(max(6.0, 1.1 * len(metrics) * max(len(groups), 2) + 2), 4.5), layout="constrained"
    )
    ax = fig.add_subplot()
    width = 0.8 / len(groups)
    for index, group in enumerate(groups):
        rows = table[table["group"] == group].set_index("metric").reindex(metrics)
        x = np.arange(len(metrics)) + (index - (len(groups) - 1) / 2) * width
        errors = np.vstack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]])
        n = rows["n"].max()
        ax.bar(x, rows["mean"], width, color=f"C{index}", label=f"{group} (n={n:.0f})")
        ax.errorbar(
            x, rows["mean"], yerr=np.nan_to_num(errors), fmt="none", color="black", capsize=3
        )
    if reference is not None:
        ax.axhline(reference, color="grey", ls="--", lw=1)
    ax.set_xticks(np.arange(len(metrics)), metrics, rotation=20, ha="right", fontsize="small")
    ax.set_ylabel(label)
    if limits is not None:
        ax.set_ylim(limits[0], limits[1] + 0.12 * (limits[1] - limits[0]))  # room for the legend
    ax.set_title(_titled(title, table["group"].unique()))
    ax.legend(fontsize="small", loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return fig


def scores(table: pd.DataFrame, title: str) -> Figure:
    """Horizontal bars of composite scores: rows are groups, columns are profiles."""
    fig = Figure(
        figsize=(7.5, 1.2 + 0.45 * len(table) * max(1, len(table.columns)) ** 0.5),
        layout="constrained",
    )
    ax = fig.add_subplot()
    height = 0.8 / len(table.columns)
    y = np.arange(len(table))[::-1]
    for index, profile in enumerate(table.columns):
        ax.barh(
            y + (len(table.columns) - 1 - index) * height - 0.4 + height / 2,  # first on top
            table[profile],
            height=height,
            color=f"C{index}",
            label=profile,
        )
    ax.set_yticks(y, table.index, fontsize="small")
    ax.set_xlim(0, 1)
    ax.set_xlabel("composite score (1 = best on every weighed metric)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return fig


def png(fig: Figure) -> bytes:
    """The figure as PNG, the bytes `fig.savefig(path, dpi=DPI)` writes, drawn once:
    savefig draws a figure with a layout engine twice (to lay it out, then to paint)."""
    fig.set_dpi(DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    out = io.BytesIO()
    mpimg.imsave(out, canvas.buffer_rgba(), format="png", origin="upper", dpi=DPI)
    return out.getvalue()


def save(fig: Figure, path: Path) -> Path:
    """In the format the suffix names (.png, .svg, .pdf)."""
    fig.savefig(path, dpi=DPI)
    return path


def _titled(title: str, groups: object) -> str:
    count = len(groups)  # type: ignore[arg-type]
    return title if count <= MAX_GROUPS else f"{title}\n(first {MAX_GROUPS} of {count} groups)"


def _spans_decades(values: pd.Series) -> bool:
    """Positive numbers over 1.5 decades or more, like learning rates: a log axis reads better."""
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(numbers) and numbers.min() > 0 and numbers.max() / numbers.min() >= 30)


def heatmap(grid: pd.DataFrame, title: str, label: str) -> Figure:
    """A table of numbers (rows x columns, e.g. two thresholds) as colours with the
    values written in; rows and columns keep their names as axis labels."""
    fig = Figure(
        figsize=(1.2 + 0.75 * len(grid.columns), 1.2 + 0.6 * len(grid)), layout="constrained"
    )
    ax = fig.add_subplot()
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(len(grid.columns)), [f"{c:g}" for c in grid.columns])
    ax.set_yticks(range(len(grid.index)), [f"{r:g}" for r in grid.index])
    for (row, column), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        if np.isfinite(value):
            ax.text(
                column, row, f"{value:.2f}", ha="center", va="center", color="w", fontsize="small"
            )
    ax.set_xlabel(grid.columns.name or "")
    ax.set_ylabel(grid.index.name or "")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=label)
    return fig


def scatter(points: dict[str, tuple[pd.Series, pd.Series]], title: str) -> Figure:
    """Each label's y against its x, with the line y = x: measured against predicted."""
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.add_subplot()
    for label, (x, y) in points.items():
        ax.scatter(x, y, s=18, alpha=0.7, label=label)
    both = pd.concat([s for pair in points.values() for s in pair]).dropna()
    if len(both):
        ax.plot([both.min(), both.max()], [both.min(), both.max()], "k--", lw=1, label="y = x")
    ax.legend(fontsize="small")
    x, y = next(iter(points.values()))
    ax.set_xlabel(str(x.name))
    ax.set_ylabel(str(y.name))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


def profiles(
    panels: dict[str, pd.DataFrame], metric: str, unit: str = "", direction: str | None = None
) -> Figure:
    """Performance profiles side by side, one panel per factor (`panels`: factor -> rows
    of analysis.robust.performance_profiles: level, n, tau, fraction, low, high): a step
    line per level with its bootstrap band."""
    fig = Figure(figsize=(5.5 * len(panels) + 0.5, 4.2), layout="constrained")
    better = "<" if direction == "lower" else ">"
    for index, (factor, table) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), index + 1)
        levels = list(dict.fromkeys(table["level"]))
        for color, level in enumerate(levels[:MAX_GROUPS]):
            rows = table[table["level"] == level]
            label = f"{level} (n={int(rows['n'].iloc[0])})"
            ax.step(rows["tau"], rows["fraction"], where="post", color=f"C{color}", label=label)
            ax.fill_between(
                rows["tau"], rows["low"], rows["high"], step="post", color=f"C{color}", alpha=0.15
            )
        ax.set_xlabel(f"τ: {axis_label(metric, unit)}")
        ax.set_ylabel(f"fraction of runs with {metric} {better} τ")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(_titled(f"per {factor}", levels))
        ax.legend(fontsize="small", title=factor)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Performance profiles of {metric} (95% bootstrap bands)")
    return fig
