"""Scoring text with a character LM, with or without test-time training (TTT).

`token_logprobs` gives log P(token | what came before) for every token of a
sequence of any length: windows of the model's block size that overlap by half,
so every token after the first half-window is predicted from at least block/2
characters. With an `Adapter`, the model trains on each window right after the
window is scored (the half it shares with the previous window is trained on
twice), so later windows are predicted by a model that has read the
earlier ones: dynamic evaluation (Krause et al. 2018), the TTT of this project.
An Adapter never sees a token before that token has been scored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from experiments.lm.model import CharLM
from experiments.lm.pairs import Pair


@dataclass(frozen=True)
class Adapter:
    """`steps` of SGD at learning rate `lr` on text already read."""

    lr: float
    steps: int = 1

    def __call__(self, model: CharLM, x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer = torch.optim.SGD(model.parameters(), lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.steps):
                logits = model(x[None])[0]
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()


@contextmanager
def restored(model: CharLM) -> Iterator[CharLM]:
    """The model, put back to its weights on entry when the block ends."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        yield model
    finally:
        model.load_state_dict(saved)


@torch.no_grad()
def token_logprobs(
    model: CharLM, ids: torch.Tensor, adapter: Adapter | None = None
) -> torch.Tensor:
    """log P(ids[t] | ids[:t]) for t = 1 .. len(ids) - 1, scored in half-overlapping windows;
    with an adapter, the model adapts on each window once it is scored."""
    block, n = model.cfg.block_size, len(ids)
    if n < 2:
        raise ValueError(f"{n} token(s): nothing to predict")
    out = torch.empty(n - 1, device=ids.device)
    start, done = 0, 0  # a window's inputs begin at start; targets 1..done are scored
    while done < n - 1:
        stop = min(start + block, n - 1)  # the window predicts targets start+1 .. stop
        x, y = ids[start:stop], ids[start + 1 : stop + 1]
        logp = F.log_softmax(model(x[None])[0], dim=-1).gather(1, y[:, None])[:, 0]
        out[done:stop] = logp[done - start :]
        done, start = stop, max(0, stop - block // 2)
        if adapter is not None:
            adapter(model, x, y)
    return out


def score_pairs(
    model: CharLM,
    pairs: list[Pair],
    encode: Callable[[str], torch.Tensor],
    adapter: Adapter | None = None,
) -> dict[str, np.ndarray]:
    """Summed and mean log-likelihood of each pair's two continuations given its context.
    With an adapter, the model first trains on the context (restored after each pair).
    The scores stay on the model's device until all pairs are scored."""
    kinds = ("correct", "distractor", "correct_norm", "distractor_norm")
    scores: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
    for pair in pairs:
        context = encode(pair.context)
        with restored(model):
            if adapter is not None and len(context) > 1:
                adapter(
                    model,
                    context[:-1][-model.cfg.block_size :],
                    context[1:][-model.cfg.block_size :],
                )
            for kind, item in (("correct", pair.correct), ("distractor", pair.distractor)):
                logp = token_logprobs(model, torch.cat([context, encode(item)]))[len(context) - 1 :]
                scores[kind].append(logp.sum())
                scores[f"{kind}_norm"].append(logp.mean())
    if not pairs:
        return {k: np.empty(0) for k in kinds}
    fetched = torch.stack([torch.stack(scores[k]) for k in kinds]).double().cpu().numpy()
    return dict(zip(kinds, fetched, strict=True))


def document_losses(
    model: CharLM, documents: list[torch.Tensor], adapter: Adapter | None = None
) -> np.ndarray:
    """(documents, positions - 1) per-token losses; the model is reset for each document."""
    losses = []
    for ids in documents:
        with restored(model):
            losses.append(-token_logprobs(model, ids, adapter))
    return torch.stack(losses).cpu().numpy()
