"""Text as character ids: the corpus, a deterministic train/validation split,
seeded training batches and a fixed set of evaluation windows.

The default corpus ships with CPython (`pydoc_data.topics`, the reference
documentation, about 465 KB), so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch
from pydantic import Field

DEFAULT_CORPUS = "pydoc"
# The `corpus` parameter of the LM experiments (orchestrator/params.py).
CorpusSource = Annotated[str, Field(description='"pydoc" (no download) or a text file')]


def load_text(source: str = DEFAULT_CORPUS) -> str:
    """The text of a corpus: "pydoc" for the built-in one, else a path to a text file."""
    if source == DEFAULT_CORPUS:
        from pydoc_data.topics import topics

        return "\n\n".join(topics[key] for key in sorted(topics))
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"corpus {source!r}: no such file (or use {DEFAULT_CORPUS!r})")
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Corpus:
    chars: str  # the vocabulary, sorted
    train: torch.Tensor  # token ids
    val: torch.Tensor

    @property
    def vocab_size(self) -> int:
        return len(self.chars)


def load_corpus(source: str = DEFAULT_CORPUS, val_fraction: float = 0.1) -> Corpus:
    """The corpus split in two: the first (1 - val_fraction) trains, the rest validates."""
    text = load_text(source)
    chars = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    split = int(len(ids) * (1 - val_fraction))
    return Corpus(chars, ids[:split], ids[split:])


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
