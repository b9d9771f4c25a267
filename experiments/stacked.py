"""Several models of one architecture trained as one: a trial bundle's fused members.

Their parameters are stacked along a new first dimension (torch.func.stack_module_state)
and the forward pass is vmapped over it (functional_call), so one kernel launch serves
every member: what fills a GPU that one small model leaves idle (HFTA, Wang et al.,
MLSys 2021). Nothing couples the members: each has its own initial weights and inputs;
the loss to minimise is the sum of theirs, so each one's gradient is its own; and an
elementwise optimizer (SGD, Adam, AdamW) over the stacks updates each member exactly as
alone. Whatever would couple them must stay out: global gradient-norm clipping, batch
statistics, random ops (vmap refuses them: dropout must be 0).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class Stack:
    """`models` (same architecture, their own weights) as one: `stack(x)` runs member i on
    `x[i]` (or every member on the same `x`, `shared=True`) and returns the outputs
    stacked; `parameters()` are the stacked leaves to optimise; `state_dict(i)` is member
    i's, as `models[i].state_dict()` would give it."""

    def __init__(self, models: list[nn.Module]) -> None:
        self.params, self.buffers = stack_module_state(models)
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture, no storage
        self.size = len(models)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def __call__(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        def one(params: dict, buffers: dict, inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (params, buffers), (inputs,))

        if self.size == 1:  # a lone model: the plain module's kernels, without vmap's cost
            alone = [
                {name: value[0] for name, value in d.items()} for d in (self.params, self.buffers)
            ]
            return one(*alone, x if shared else x[0]).unsqueeze(0)
        in_dims = (0, 0, None if shared else 0)
        return vmap(one, in_dims=in_dims)(self.params, self.buffers, x)

    @property
    def training(self) -> bool:
        return self.base.training

    def train(self, mode: bool = True) -> Stack:
        self.base.train(mode)
        return self

    def hold(self, moving: list[bool]) -> None:
        """Set the gradients of the members not `moving` to exactly zero (a member that
        stopped early: under plain SGD it stays as it was, even where its loss is NaN)."""
        held = torch.tensor([not m for m in moving], device=self.parameters()[0].device)
        for param in self.parameters():
            if param.grad is not None:
                param.grad[held] = 0.0

    def state_dict(self, member: int) -> dict[str, torch.Tensor]:
        return {
            name: value[member].detach().clone()
            for name, value in {**self.params, **self.buffers}.items()
        }
