"""MLP activations compared in the reproducibility experiment, SmeLU among them.

SmeLU (Shamir, Lin, Coviello 2020) is ReLU with its kink replaced by a quadratic
piece, so its gradient is continuous:
    0                      for x <= -beta
    (x + beta)^2 / (4 beta) for |x| <= beta
    x                      for x >= beta
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from torch import nn

Activation = Literal["relu", "gelu", "swish", "smelu"]  # a parameter's type (params.py)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)


class _SmeLUFunction(torch.autograd.Function):
    """SmeLU with its gradient written out: clamp((x + beta) / (2 beta), 0, 1).

    Autograd through the piecewise formula keeps several intermediates and runs
    about half as fast as ReLU on CPU; this keeps only x. Written in the torch.func style
    (forward without ctx, setup_context) so that vmap, which trains stacked models
    (experiments/stacked.py), maps it.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, beta: float) -> torch.Tensor:
        quadratic = torch.clamp(x + beta, min=0) ** 2 / (4 * beta)  # 0 below -beta
        return torch.where(x >= beta, x, quadratic)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, float], output: torch.Tensor) -> None:
        x, ctx.beta = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * torch.clamp((x + ctx.beta) / (2 * ctx.beta), 0, 1), None


class SmeLU(nn.Module):
    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"SmeLU needs beta > 0, got {beta}")
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SmeLUFunction.apply(x, self.beta)

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
