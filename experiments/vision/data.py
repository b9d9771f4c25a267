"""Labelled images as tensors: scikit-learn's bundled 8x8 digits by default, MNIST
from a local folder of IDX files when a spec names one. Nothing is downloaded.

`split` holds the train / test split and the forget / retain split of the training
set; both depend on `data_seed` only, so every trial of a sweep, whatever its seed,
forgets the same examples and is tested on the same ones.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DIGITS = "digits"
MNIST_FILES = {
    "images": "train-images-idx3-ubyte",
    "labels": "train-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class Images:
    x: torch.Tensor  # (n, 1, height, width), float in [0, 1]
    y: torch.Tensor  # (n,) class ids

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: torch.Tensor) -> Images:
        return Images(self.x[index], self.y[index])


@dataclass(frozen=True)
class Split:
    forget: Images  # the training examples to unlearn
    retain: Images  # the rest of the training set
    test: Images  # held out from all training

    @property
    def train(self) -> Images:
        return Images(
            torch.cat([self.forget.x, self.retain.x]), torch.cat([self.forget.y, self.retain.y])
        )

    @property
    def n_classes(self) -> int:
        return int(torch.cat([self.train.y, self.test.y]).max()) + 1


def load_images(source: str = DIGITS) -> Images:
    """ "digits" (1,797 8x8 images, inside scikit-learn) or a folder holding MNIST's
    train-images-idx3-ubyte and train-labels-idx1-ubyte (optionally .gz)."""
    if source == DIGITS:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return _images(digits.images / 16.0, digits.target)
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"dataset {source!r}: not a folder of MNIST IDX files (or use {DIGITS!r})"
        )
    return _images(read_idx(_find(folder, "images")) / 255.0, read_idx(_find(folder, "labels")))


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format): magic 0x0000 + type code + rank, then the sizes as
    big-endian int32, then the data. Only unsigned bytes (type 0x08) occur in MNIST."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    rank = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    if data.size != np.prod(shape):
        raise ValueError(f"{path}: header says {shape}, file holds {data.size} values")
    return data.reshape(shape)


def split(
    images: Images,
    forget_class: int | None = None,
    forget_fraction: float | None = None,
    test_fraction: float = 0.2,
    data_seed: int = 0,
) -> Split:
    """Train / test at random, then the training set's forget set: every example of
    `forget_class`, or a random `forget_fraction` of it (exactly one of the two)."""
    if (forget_class is None) == (forget_fraction is None):
        raise ValueError("set exactly one of forget_class and forget_fraction")
    if forget_fraction is not None and not 0 < forget_fraction < 1:
        raise ValueError(f"forget_fraction must lie in (0, 1), got {forget_fraction}")
    generator = torch.Generator().manual_seed(data_seed)
    order = torch.randperm(len(images), generator=generator)
    n_test = int(len(images) * test_fraction)
    test, train = images[order[:n_test]], images[order[n_test:]]
    if forget_class is not None:
        if forget_class not in set(images.y.tolist()):
            raise ValueError(f"forget_class {forget_class}: no such class in the data")
        forget = train.y == forget_class
    else:
        forget = torch.zeros(len(train), dtype=torch.bool)
        forget[
            torch.randperm(len(train), generator=generator)[: int(len(train) * forget_fraction)]
        ] = True
    return Split(forget=train[forget], retain=train[~forget], test=test)


def _images(pixels: np.ndarray, labels: np.ndarray) -> Images:
    x = torch.tensor(np.asarray(pixels, dtype=np.float32)).unsqueeze(1)
    return Images(x, torch.tensor(np.asarray(labels, dtype=np.int64)))


def _find(folder: Path, kind: str) -> Path:
    for name in (MNIST_FILES[kind], MNIST_FILES[kind] + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {MNIST_FILES[kind]}[.gz] (MNIST's training {kind})")
