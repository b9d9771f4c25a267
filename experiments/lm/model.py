"""A character-level transformer LM, GPT style, with the MLP activation as a parameter.

Embeddings -> n_layer blocks (causal self-attention, then an MLP) -> logits.
Pre-norm residual blocks; the activation sits between the MLP's two linears.
Decoding can keep a `KVCache`: each forward pass then computes only the new tokens,
attending to the keys and values of those before, and `truncate` rolls it back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from experiments.lm.activations import make_activation


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    activation: str = "relu"
    beta: float = 1.0  # SmeLU only
    dropout: float = 0.0


class KVCache:
    """Every layer's keys and values, (batch, heads, tokens, head size), for the tokens a
    model has seen: a forward pass given the cache computes only the tokens after them."""

    def __init__(self) -> None:
        self.layers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.layers[0][0].shape[2] if self.layers else 0

    def extend(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append a layer's new keys and values; all of that layer's are returned."""
        if layer in self.layers:
            past_k, past_v = self.layers[layer]
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        self.layers[layer] = (k, v)
        return k, v

    def truncate(self, length: int) -> None:
        """Forget every token from position `length` on (drafted tokens that were rejected)."""
        self.layers = {i: (k[:, :, :length], v[:, :, :length]) for i, (k, v) in self.layers.items()}


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        """Causal attention written out, not F.scaled_dot_product_attention: torch.func.vmap
        (models trained together, experiments/stacked.py) has no batching rule for the
        fused kernels, and solo and stacked models must compute alike. With a cache, the
        t new tokens attend to the cached ones and to those before them among the new."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        seen = k.shape[2]  # keys: cached and new
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
        causal = torch.ones(t, seen, dtype=torch.bool, device=x.device).tril(seen - t)
        weights = F.dropout(
            scores.masked_fill(~causal, float("-inf")).softmax(-1), self.dropout, self.training
        )
        y = weights @ v
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd),
            make_activation(cfg.activation, cfg.beta),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd),
            nn.Dropout(cfg.dropout),
        )

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


class CharLM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.Sequential(*(Block(cfg) for _ in range(cfg.n_layer)))
        self.ln = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (batch, time, vocab) for token ids (batch, time); with a cache, for the
        tokens that follow those it holds (and they are added to it)."""
        start = len(cache) if cache is not None else 0
        if start + idx.shape[1] > self.cfg.block_size:
            raise ValueError(
                f"{start + idx.shape[1]} tokens exceed the model's context ({self.cfg.block_size})"
            )
        x = self.tok(idx) + self.pos(torch.arange(start, start + idx.shape[1], device=idx.device))
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        return self.head(self.ln(x))

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self(idx)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    def checkpoint(self) -> dict:
        """What `load` needs to rebuild this model."""
        return {"config": asdict(self.cfg), "state_dict": self.state_dict()}

    @classmethod
    def load(cls, checkpoint: dict) -> CharLM:
        model = cls(ModelConfig(**checkpoint["config"]))
        model.load_state_dict(checkpoint["state_dict"])
        return model.eval()

    @classmethod
    def read(cls, path: str | Path, device: str | torch.device = "cpu") -> CharLM:
        """The model saved by `checkpoint()` at `path`, read on the CPU, then moved to `device`."""
        return cls.load(torch.load(path, map_location="cpu")).to(device)
