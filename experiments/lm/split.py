"""A train/validation split of a corpus with no validation text in training.

Documentation repeats itself: pydoc's topics copy whole passages from one another
(`if` is a part of `compound`), so a split by position, or by document alone,
leaves validation passages that the model has read verbatim in training. Here:

1. Documents (pydoc's topics; paragraphs of a text file) are taken in a fixed
   shuffled order into validation until their windows that no training document
   holds reach `val_fraction` of the corpus; the rest train.
2. Every validation line that shares a `WINDOW`-character window with the
   training text is dropped, and again on the joined remainder (joining makes
   new windows), until no window of validation occurs in training.

Windows are compared by a 64-bit polynomial hash: a collision could only drop a
line too many, never keep an overlap.
"""

from __future__ import annotations

import random

import numpy as np

WINDOW = 64
_BASE = np.uint64(1_099_511_628_211)


def clean_split(documents: list[str], val_fraction: float) -> tuple[str, str]:
    """(train text, validation text): no `WINDOW` characters of validation occur in
    training. Documents are joined by a blank line."""
    chosen = _validation_documents(documents, val_fraction)
    train = "\n\n".join(d for i, d in enumerate(documents) if i not in chosen)
    lines = "\n\n".join(documents[i] for i in sorted(chosen)).split("\n")
    return train, "\n".join(_unseen_lines(lines, np.unique(window_hashes(train))))


def _validation_documents(documents: list[str], val_fraction: float) -> set[int]:
    """Documents in a fixed shuffled order, until the windows of theirs that no training
    document holds reach `val_fraction` of the corpus."""
    order = list(range(len(documents)))
    random.Random(0).shuffle(order)
    per_document = [np.unique(window_hashes(d)) for d in documents]
    _, ids = np.unique(np.concatenate(per_document), return_inverse=True)
    ids = np.split(ids, np.cumsum([len(h) for h in per_document])[:-1])
    in_training = np.bincount(np.concatenate(ids))  # documents holding each window
    target = val_fraction * sum(map(len, documents))
    chosen: set[int] = set()
    for i in order[:-1]:  # at least one document trains
        if sum((in_training[ids[j]] == 0).sum() for j in chosen) >= target:
            break
        chosen.add(i)
        in_training[ids[i]] -= 1
    return chosen


def _unseen_lines(lines: list[str], known: np.ndarray) -> list[str]:
    """`lines` less every line that a window seen in training touches, until none does."""
    while True:
        hits = np.flatnonzero(_contains(known, window_hashes("\n".join(lines))))
        if not len(hits):
            return lines
        starts = np.cumsum([0] + [len(line) + 1 for line in lines[:-1]])
        first = np.searchsorted(starts, hits, side="right") - 1
        last = np.searchsorted(starts, hits + WINDOW - 1, side="right") - 1
        drop = {i for a, b in zip(first, last, strict=True) for i in range(a, b + 1)}
        lines = [line for i, line in enumerate(lines) if i not in drop]


def window_hashes(text: str) -> np.ndarray:
    """A hash of each `WINDOW`-character substring of `text`, in order."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = len(codes) - WINDOW + 1
    hashes = np.zeros(max(n, 0), dtype=np.uint64)
    with np.errstate(over="ignore"):  # arithmetic modulo 2^64
        for j in range(WINDOW if n > 0 else 0):
            hashes = hashes * _BASE + codes[j : j + n]
    return hashes


def _contains(known: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    if not len(known):
        return np.zeros(len(hashes), dtype=bool)
    at = np.minimum(np.searchsorted(known, hashes), len(known) - 1)
    return known[at] == hashes
