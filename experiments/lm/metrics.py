"""The LM evaluation metrics of SCIENCE.md section 4, as plain functions of scores.

Minimal pairs: accuracy is the mean of 1[log P(correct) > log P(distractor)], a tie
counting one half (so a model that cannot tell the two apart scores 50%, chance),
with a Wilson interval over the n pairs. Loss by position: binned mean loss against
position, a least-squares slope over the bins, and a bootstrap interval from
resampling the documents (the notebook's two-point "slope" was not a fit).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

PER = 1000  # slopes are in nats per PER positions


def pair_accuracy(correct: np.ndarray, distractor: np.ndarray) -> float:
    """Share of pairs whose correct item scores higher; ties (equal up to float32
    rounding, as a model indifferent to the two gives) count 1/2."""
    correct, distractor = np.asarray(correct, float), np.asarray(distractor, float)
    if correct.shape != distractor.shape or correct.size == 0:
        raise ValueError(
            f"need two equal, non-empty score arrays: {correct.shape}, {distractor.shape}"
        )
    tie = np.isclose(correct, distractor, rtol=1e-6, atol=1e-6)  # float32 rounding is a tie
    return float(np.mean(np.where(tie, 0.5, correct > distractor)))


def wilson_interval(accuracy: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion observed over n trials."""
    z = stats.norm.ppf((1 + confidence) / 2)
    centre = (accuracy + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(accuracy * (1 - accuracy) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return float(centre - half), float(centre + half)


def binned(losses: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin starts, per-document bin means) of losses shaped (documents, positions);
    a last bin shorter than `width` is dropped."""
    documents, positions = losses.shape
    bins = positions // width
    means = losses[:, : bins * width].reshape(documents, bins, width).mean(axis=2)
    return np.arange(bins) * width, means


def slope(positions: np.ndarray, losses: np.ndarray) -> float:
    """Least-squares slope of loss against position, in nats per PER positions."""
    return float(np.polyfit(positions, losses, 1)[0] * PER)


def slope_interval(
    positions: np.ndarray,
    per_document: np.ndarray,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Slope of the documents' mean curve, and a percentile bootstrap interval from
    resampling documents with replacement. per_document: (documents, bins)."""
    fitted = slope(positions, per_document.mean(axis=0))
    if len(per_document) < 2:
        return fitted, np.nan, np.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(per_document), (n_boot, len(per_document)))
    curves = per_document[picks].mean(axis=1)  # (n_boot, bins)
    centred = positions - positions.mean()
    slopes = curves @ centred / (centred @ centred) * PER
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(slopes, [tail, 100 - tail])
    return fitted, float(low), float(high)
