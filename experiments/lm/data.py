"""Text as character ids: the corpus, a train/validation split with no validation text in
training, seeded training batches and a fixed set of evaluation windows.

The default corpus ships with CPython (`pydoc_data.topics`, the reference
documentation, about 465 KB), so nothing is downloaded.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch
from pydantic import Field

from experiments.lm.split import clean_split

DEFAULT_CORPUS = "pydoc"
# The `corpus` parameter of the LM experiments (orchestrator/params.py).
CorpusSource = Annotated[str, Field(description='"pydoc" (no download) or a text file')]


def load_documents(source: str = DEFAULT_CORPUS) -> list[str]:
    """A corpus's documents: "pydoc" for the built-in one (its topics), else a path to a
    text file (its paragraphs, split at blank lines)."""
    if source == DEFAULT_CORPUS:
        from pydoc_data.topics import topics

        return [topics[key] for key in sorted(topics)]
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"corpus {source!r}: no such file (or use {DEFAULT_CORPUS!r})")
    return [part for part in path.read_text(encoding="utf-8").split("\n\n") if part]


@dataclass(frozen=True)
class Corpus:
    chars: str  # the vocabulary, sorted
    train: torch.Tensor  # token ids
    val: torch.Tensor

    @property
    def vocab_size(self) -> int:
        return len(self.chars)


def load_corpus(source: str = DEFAULT_CORPUS, val_fraction: float = 0.1) -> Corpus:
    """The corpus split in two with no validation text in training (experiments/lm/split.py):
    about `val_fraction` of it validates. The vocabulary is every character of the corpus."""
    documents = tuple(load_documents(source))
    train, val = _split(documents, val_fraction)
    chars = "".join(sorted(set("".join(documents))))
    index = {c: i for i, c in enumerate(chars)}
    return Corpus(
        chars, *(torch.tensor([index[c] for c in t], dtype=torch.long) for t in (train, val))
    )


@functools.lru_cache(maxsize=2)
def _split(documents: tuple[str, ...], val_fraction: float) -> tuple[str, str]:
    """Cached: a worker that runs several trials splits once."""
    return clean_split(list(documents), val_fraction)


def batches(
    data: torch.Tensor, block_size: int, batch_size: int, steps: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` batches of random windows (inputs, next-token targets) on `data`'s device.
    The CPU generator fixes the order, the same on every device; the starts are drawn at
    once and moved once."""
    starts = torch.randint(0, len(data) - block_size - 1, (steps, batch_size), generator=generator)
    for row in starts.to(data.device):
        yield windows(data, row, block_size)


def eval_windows(
    data: torch.Tensor, block_size: int, n_windows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evenly spaced windows over `data`: the same for every trial, whatever its seed."""
    starts = torch.linspace(0, len(data) - block_size - 1, n_windows).long()
    return windows(data, starts, block_size)


def windows(
    data: torch.Tensor, starts: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs data[s : s + block] and their next-token targets, one row per start,
    gathered on `data`'s device."""
    offsets = torch.arange(block_size, device=data.device)
    index = starts.to(data.device)[:, None] + offsets
    return data[index], data[index + 1]
