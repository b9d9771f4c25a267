"""The LM corpus split: no 64-character window of validation occurs in training, checked
with exact substrings (not the split's own hashes)."""

from __future__ import annotations

from pydoc_data.topics import topics

from experiments.lm.data import load_corpus
from experiments.lm.split import WINDOW, clean_split


def overlapping_windows(train: str, val: str) -> int:
    seen = {train[i : i + WINDOW] for i in range(len(train) - WINDOW + 1)}
    return sum(val[i : i + WINDOW] in seen for i in range(len(val) - WINDOW + 1))


def decoded(corpus, ids) -> str:
    return "".join(corpus.chars[i] for i in ids.tolist())


def test_pydoc_split_shares_no_window_and_validates_a_tenth():
    corpus = load_corpus()
    train, val = decoded(corpus, corpus.train), decoded(corpus, corpus.val)
    assert overlapping_windows(train, val) == 0
    assert 0.08 < len(val) / (len(train) + len(val)) < 0.15
    # a split by position (the first 90% trains) shares hundreds of windows: the check bites
    text = "\n\n".join(topics[key] for key in sorted(topics))
    cut = int(0.9 * len(text))
    assert overlapping_windows(text[:cut], text[cut:]) > 100


def test_a_document_copied_into_another_never_validates_verbatim():
    shared = "A passage that two documents share, word for word, and long enough to count."
    unique = [
        f"Document {i} says its own thing, number {i * 7919} of many. " * 3 for i in range(40)
    ]
    documents = [f"{text}\n{shared}\n{text[::-1]}" for text in unique]
    train, val = clean_split(documents, val_fraction=0.2)
    assert overlapping_windows(train, val) == 0
    assert shared not in val and shared in train
    assert val  # the documents' own text still validates
