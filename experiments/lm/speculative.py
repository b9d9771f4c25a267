"""Speculative decoding with adaptive drafting, at two or three levels (SCIENCE.md s. 2).

A *proposer* drafts a block of tokens for a verifier and returns, per token, the
distribution it was drawn from. `Drafter` samples from one model token by token;
`Cascade` produces tokens of a model by speculative decoding with a smaller
proposer (little -> draft), so a cascade can itself propose to the target. Both
stop adaptively: after a token whose confidence (the proposing model's largest
probability at that position) is below `threshold`, or at `max_len`.

Verification is exact speculative sampling (Leviathan et al. 2023): token x from
q is kept with probability min(1, p(x) / q(x)); on rejection one token is drawn
from max(0, p - q), normalised, and the rest of the block is dropped; if all are
kept, a bonus token comes from p. Greedy: keep x iff x = argmax p. Either way the
output is distributed as the verifier's own decoding (greedy: identical).

Every sequence stays within the models' context (`block_size`): each position is
scored with its whole prefix, as target-only decoding scores it, so the
equivalence is exact, not approximate. Each `Scorer` keeps its model's KV cache
(experiments/lm/model.py) by default: a call computes only the tokens its model has
not seen, after rolling the cache back to where the sequence departs from what it
saw (the draft tokens a verifier rejected); `cache=False` scores the whole sequence
every call, for comparison.

Devices: token ids are plain lists; a `Scorer` puts them on its model's device and
the distributions stay there. Random numbers come from a CPU generator (the same
stream whatever the device). What leaves the device are the decisions: a token and
its confidence per drafted token, and one block of accept/reject per verification.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from experiments.lm.model import KVCache

Model = torch.nn.Module  # (1, T) ids [, cache] -> (1, T, vocab) logits


@dataclass
class Counters:
    """What one decoding run did; per model name (a proposer's, for its tokens)."""

    generated: dict[str, int] = field(default_factory=dict)  # tokens a level proposed
    accepted: dict[str, int] = field(default_factory=dict)  # of those, kept by its verifier
    rejections: dict[str, int] = field(default_factory=dict)  # verifications that cut a draft
    calls: dict[str, int] = field(default_factory=dict)  # forward passes
    seconds: dict[str, float] = field(default_factory=dict)  # time in forward passes
    prefills: dict[str, int] = field(default_factory=dict)  # of the calls, into an empty cache
    prefill_seconds: dict[str, float] = field(default_factory=dict)  # ... and their time
    # tokens dropped from a model's cache: rejected drafts, and a previous prompt's tokens
    rolled_back: dict[str, int] = field(default_factory=dict)
    # per proposer, the length of each draft its verifier checked (one per verifier call)
    draft_lengths: dict[str, list[int]] = field(default_factory=dict)

    def add(self, table: dict, name: str, amount: float) -> None:
        table[name] = table.get(name, 0) + amount

    def step_time(self, name: str) -> float:
        """Mean seconds of one of the model's decoding steps: a forward pass that extends
        its cache (a prompt's prefill left out), or any pass without a cache; nan if none."""
        steps = self.calls.get(name, 0) - self.prefills.get(name, 0)
        return self.step_seconds(name) / steps if steps else float("nan")

    def step_seconds(self, name: str) -> float:
        return self.seconds.get(name, 0.0) - self.prefill_seconds.get(name, 0.0)

    def all_prefill_seconds(self) -> float:
        """Seconds of every model's prompt prefills."""
        return sum(self.prefill_seconds.values())

    def alpha(self, level: str) -> float:
        """The chance that a verifier keeps a drafted token it reaches (Leviathan et al.'s
        alpha): a rejection drops the rest of its draft unseen, so accepted / generated
        would count those as rejected too."""
        reached = self.accepted.get(level, 0) + self.rejections.get(level, 0)
        return self.accepted.get(level, 0) / reached if reached else float("nan")


class Scorer:
    """A model's next-token distributions over a sequence, with its calls timed. With a
    cache, it remembers the sequence it scored last and the distributions of its tokens."""

    def __init__(self, name: str, model: Model, counters: Counters, cache: bool = True) -> None:
        self.name, self.model, self.counters = name, model, counters
        self.device = next(model.parameters()).device
        self.cache = KVCache() if cache else None
        self.seen: list[int] = []  # the tokens in the cache
        self.rows = torch.empty(0)  # ... and their distributions (len(seen), vocab)

    @torch.no_grad()
    def __call__(self, seq: list[int]) -> torch.Tensor:
        """(len(seq), vocab) on the model's device: row i is the distribution of the token
        after seq[: i + 1]."""
        if self.cache is None:
            return self._forward(seq)
        kept = _common_prefix(self.seen, seq)
        if kept < len(self.seen):  # the tokens after `kept` were rejected: roll back
            self.counters.add(self.counters.rolled_back, self.name, len(self.seen) - kept)
            self.cache.truncate(kept)
            self.seen, self.rows = self.seen[:kept], self.rows[:kept]
        if kept < len(seq):
            new = self._forward(seq[kept:], prefill=kept == 0)
            self.seen, self.rows = list(seq), torch.cat([self.rows, new]) if kept else new
        return self.rows

    def _forward(self, tokens: list[int], prefill: bool = False) -> torch.Tensor:
        """One timed forward pass over `tokens` (after the cache's, if there is one)."""
        started = time.perf_counter()
        ids = torch.tensor(tokens, device=self.device)
        logits = self.model(ids[None]) if self.cache is None else self.model(ids[None], self.cache)
        probs = torch.softmax(logits.double()[0], dim=-1)
        if probs.is_cuda:
            torch.cuda.synchronize(probs.device)  # time the work, not only its launch
        seconds = time.perf_counter() - started
        self.counters.add(self.counters.calls, self.name, 1)
        self.counters.add(self.counters.seconds, self.name, seconds)
        if prefill:
            self.counters.add(self.counters.prefills, self.name, 1)
            self.counters.add(self.counters.prefill_seconds, self.name, seconds)
        return probs


def _common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def choose(probs: torch.Tensor, greedy: bool, generator: torch.Generator | None) -> int:
    """A token from `probs` (on any device, not necessarily normalised): its argmax, or
    a draw by inverting the cumulative distribution at a uniform number from the CPU
    `generator` (a token of probability 0 is never drawn)."""
    if greedy:
        return int(probs.argmax())
    cdf = probs.cumsum(0)
    passed = (cdf <= uniform(generator) * cdf[-1]).sum()  # tokens whose mass lies below the draw
    return int(passed.clamp(max=len(probs) - 1))


def confidence(probs: torch.Tensor) -> float:
    """The largest probability of a distribution: how sure its model is."""
    return float(probs.max())


def uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator, dtype=torch.float64))


def verify(
    p: torch.Tensor,
    draft: list[int],
    q: list[torch.Tensor],
    greedy: bool,
    generator: torch.Generator | None,
) -> tuple[list[int], list[torch.Tensor]]:
    """Speculative sampling of `draft` (drawn from `q`) against the verifier's rows `p`
    (len(draft) + 1 of them). Returns the tokens to append, each with the verifier's
    distribution at its position."""
    kept: list[bool] = []  # per draft token; decided with one copy off the device
    if draft:
        rows = torch.arange(len(draft), device=p.device)
        tokens = torch.tensor(draft, device=p.device)
        if greedy:
            kept = (p[rows].argmax(dim=1) == tokens).tolist()
        else:
            ratios = (p[rows, tokens] / torch.stack(q)[rows, tokens]).tolist()
            kept = [uniform(generator) < ratio for ratio in ratios]
    for i, keep in enumerate(kept):
        if not keep:
            residual = p[i] if greedy else torch.clamp(p[i] - q[i], min=0)
            return [*draft[:i], choose(residual, greedy, generator)], list(p[: i + 1])
    return [*draft, choose(p[len(draft)], greedy, generator)], list(p[: len(draft) + 1])


@dataclass
class Drafter:
    """Proposes tokens sampled from one model, while its confidence stays >= threshold."""

    scorer: Scorer
    threshold: float
    max_len: int

    def propose(
        self, seq: list[int], limit: int, greedy: bool, generator: torch.Generator | None
    ) -> tuple[list[int], list[torch.Tensor]]:
        tokens: list[int] = []
        dists: list[torch.Tensor] = []
        while len(tokens) < min(self.max_len, limit):
            q = self.scorer(seq + tokens)[-1]
            tokens.append(choose(q, greedy, generator))
            dists.append(q)
            if confidence(q) < self.threshold:
                break
        counters = self.scorer.counters
        counters.add(counters.generated, self.scorer.name, len(tokens))
        return tokens, dists


@dataclass
class Cascade:
    """Proposes tokens of `scorer`'s model, produced by speculative decoding with a smaller
    `proposer`; stops after a token whose confidence is below threshold, or at max_len."""

    scorer: Scorer
    proposer: Drafter | Cascade
    threshold: float
    max_len: int

    def propose(
        self, seq: list[int], limit: int, greedy: bool, generator: torch.Generator | None
    ) -> tuple[list[int], list[torch.Tensor]]:
        cap = min(self.max_len, limit)
        tokens: list[int] = []
        dists: list[torch.Tensor] = []
        while len(tokens) < cap:
            new, new_dists = step(
                self.scorer, self.proposer, seq + tokens, cap - len(tokens), greedy, generator
            )
            for token, dist in zip(new, new_dists, strict=True):
                tokens.append(token)
                dists.append(dist)
                if confidence(dist) < self.threshold or len(tokens) == cap:
                    return self._counted(tokens, dists)
        return self._counted(tokens, dists)

    def _counted(self, tokens: list[int], dists: list[torch.Tensor]) -> tuple[list, list]:
        counters = self.scorer.counters
        counters.add(counters.generated, self.scorer.name, len(tokens))
        return tokens, dists


def step(
    scorer: Scorer,
    proposer: Drafter | Cascade | None,
    seq: list[int],
    limit: int,
    greedy: bool,
    generator: torch.Generator | None,
) -> tuple[list[int], list[torch.Tensor]]:
    """One verifier call: a draft of at most limit - 1 tokens (so that the tokens this
    step appends never exceed `limit`), verified in one forward pass."""
    draft, q = proposer.propose(seq, limit - 1, greedy, generator) if proposer else ([], [])
    p = scorer(seq + draft)[len(seq) - 1 :]
    tokens, dists = verify(p, draft, q, greedy, generator)
    if proposer is not None:
        counters, kept = scorer.counters, len(tokens) - 1
        counters.add(counters.accepted, proposer.scorer.name, kept)
        counters.add(counters.rejections, proposer.scorer.name, int(kept < len(draft)))
        counters.draft_lengths.setdefault(proposer.scorer.name, []).append(len(draft))
    return tokens, dists


def generate(
    target: Scorer,
    proposer: Drafter | Cascade | None,
    prompt: list[int],
    n_tokens: int,
    greedy: bool = True,
    generator: torch.Generator | None = None,
) -> list[int]:
    """`n_tokens` tokens after `prompt`, distributed as the target's own decoding."""
    seq = list(prompt)
    while len(seq) < len(prompt) + n_tokens:
        remaining = len(prompt) + n_tokens - len(seq)
        tokens, _ = step(target, proposer, seq, remaining, greedy, generator)
        seq += tokens
    return seq[len(prompt) :]
