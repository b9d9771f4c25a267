"""MLP activations compared in the reproducibility experiment, SmeLU among them.

SmeLU (Shamir, Lin, Coviello 2020) is ReLU with its kink replaced by a quadratic
piece, so its gradient is continuous:
    0                      for x <= -beta
    (x + beta)^2 / (4 beta) for |x| <= beta
    x                      for x >= beta
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = ("relu", "gelu", "swish", "smelu")


class SmeLU(nn.Module):
    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"SmeLU needs beta > 0, got {beta}")
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quadratic = (x + self.beta) ** 2 / (4 * self.beta)
        return torch.where(x <= -self.beta, 0.0, torch.where(x >= self.beta, x, quadratic))

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


def make_activation(name: str, beta: float = 1.0) -> nn.Module:
    """The activation module for a config's `activation` (and `beta`, for smelu)."""
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    if name == "swish":
        return nn.SiLU()
    if name == "smelu":
        return SmeLU(beta)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
