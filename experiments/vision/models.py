"""The two classifiers of the unlearning family, in plain PyTorch: an MLP of a given
width and depth, and a small CNN. Both take (batch, 1, height, width) images of any
size (digits are 8x8, MNIST 28x28) and return class logits."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from experiments.stacked import Stack


def mlp(pixels: int, classes: int, width: int = 64, depth: int = 2) -> nn.Module:
    """depth hidden layers of `width` units with ReLU."""
    layers: list[nn.Module] = [nn.Flatten()]
    for index in range(depth):
        layers += [nn.Linear(pixels if index == 0 else width, width), nn.ReLU()]
    layers.append(nn.Linear(width if depth else pixels, classes))
    return nn.Sequential(*layers)


def cnn(classes: int, channels: int = 16) -> nn.Module:
    """Two 3x3 convolutions, pooled to 4x4 whatever the image size, then a linear layer."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(2 * channels * 16, classes),
    )


def build(config: dict[str, Any], image_shape: tuple[int, ...], classes: int) -> nn.Module:
    """`arch: mlp` (width, depth) or `arch: cnn` (channels)."""
    arch = config.get("arch", "mlp")
    if arch == "mlp":
        pixels = int(torch.tensor(image_shape).prod())
        return mlp(pixels, classes, config.get("width", 64), config.get("depth", 2))
    if arch == "cnn":
        return cnn(classes, config.get("channels", 16))
    raise ValueError(f"arch {arch!r}: use mlp or cnn")


def flat_parameters(models: Stack) -> torch.Tensor:
    """Each member's parameters in one vector (a copy), for ||theta - theta_0||:
    (members, parameters)."""
    return torch.cat([p.detach().flatten(1) for p in models.parameters()], dim=1).clone()


def finite_parameters(models: Stack) -> torch.Tensor:
    """Per member, whether every one of its parameters is finite: (members,) booleans."""
    finite = [p.detach().flatten(1).isfinite().all(dim=1) for p in models.parameters()]
    return torch.stack(finite).all(dim=0)


@torch.no_grad()
def accuracy(models: Stack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each member's share of correct top-1 predictions, as a tensor of one value per member
    on their device: the caller decides when the numbers leave it. NaN for an empty set,
    and for a member with any non-finite logit on the set: argmax of NaN logits is 0, so a
    diverged model would otherwise score as one that predicts class 0 everywhere."""
    if len(y) == 0:
        return torch.full((models.size,), float("nan"), device=y.device)
    was_training = models.training
    models.train(False)
    logits = models(x, shared=True)  # (members, n, classes)
    models.train(was_training)
    correct = (logits.argmax(dim=-1) == y).float().mean(dim=-1)
    return correct.masked_fill(~logits.isfinite().flatten(1).all(dim=1), float("nan"))
