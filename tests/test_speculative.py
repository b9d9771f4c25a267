"""Speculative decoding is lossless: greedy output equals the target's own greedy output
token for token at every threshold pair; sampled output has the target's distribution
(chi-square, with a control that the test can tell another model's apart); counters
are consistent. Small CharLMs in float64, no training needed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from experiments.lm.model import CharLM, ModelConfig
from experiments.lm.speculative import Cascade, Counters, Drafter, Scorer, generate

VOCAB = 6


def family(block: int = 48) -> tuple[CharLM, CharLM, CharLM]:
    """target, draft, little: the smaller two are noisy copies of the target, so they
    agree with it often but not always (random weights alone would almost never agree)."""
    torch.manual_seed(0)
    target = CharLM(ModelConfig(vocab_size=VOCAB, block_size=block, n_layer=2, n_embd=32))
    with torch.no_grad():
        target.head.weight.mul_(8)  # peaky distributions, like a trained model's
    models = [target]
    for noise in (0.3, 0.8):
        copy = CharLM(target.cfg)
        copy.load_state_dict(target.state_dict())
        with torch.no_grad():
            for weight in copy.parameters():
                weight.add_(noise * weight.std() * torch.randn_like(weight))
        models.append(copy)
    return tuple(m.double().eval() for m in models)


def decoders(models, counters, small_threshold=0.5, draft_threshold=0.5, max_little=3, max_draft=5):
    target, draft, little = (
        Scorer(n, m, counters) for n, m in zip(("target", "draft", "little"), models, strict=True)
    )
    two_level = Drafter(draft, threshold=0.0, max_len=4)
    tri = Cascade(draft, Drafter(little, small_threshold, max_little), draft_threshold, max_draft)
    return target, two_level, tri


PROMPT = [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("small", "large"), list(itertools.product([0.0, 0.4, 0.8, 0.99], [0.0, 0.5, 0.95]))
)
def test_greedy_output_is_the_targets_own_for_every_threshold_pair(small: float, large: float):
    models = family()
    counters = Counters()
    target, two_level, tri = decoders(models, counters, small, large)
    plain = generate(target, None, PROMPT, 40)
    assert generate(target, tri, PROMPT, 40) == plain
    assert generate(target, two_level, PROMPT, 40) == plain
    assert counters.accepted["draft"] > 0 and counters.accepted["little"] > 0  # both paths ran


def test_counters_are_consistent():
    counters = Counters()
    target, _, tri = decoders(family(), counters)
    out = generate(target, tri, PROMPT, 40)
    assert len(out) == 40
    for level in ("little", "draft"):
        assert 0 <= counters.accepted[level] <= counters.generated[level]
    assert len(out) / counters.calls["target"] >= 1  # tokens per target call
    assert counters.calls["target"] <= 40 and counters.seconds["target"] > 0


def joint_frequencies(sample, runs: int) -> np.ndarray:
    counts = np.zeros((VOCAB, VOCAB))
    for _ in range(runs):
        a, b = sample()
        counts[a, b] += 1
    return counts.ravel()


def test_sampled_tokens_follow_the_targets_distribution():
    models = family(block=8)
    counters = Counters()
    target, _, tri = decoders(models, counters, 0.3, 0.3, max_little=2, max_draft=2)
    prompt = [0]
    with torch.no_grad():  # exact P(t1, t2 | prompt) under the target, by enumeration
        first = torch.softmax(models[0](torch.tensor([prompt])).double()[0, -1], -1)
        exact = np.array(
            [
                float(first[a])
                * float(torch.softmax(models[0](torch.tensor([prompt + [a]]))[0, -1], -1)[b])
                for a in range(VOCAB)
                for b in range(VOCAB)
            ]
        )
    g = torch.Generator().manual_seed(1)
    runs = 3000
    observed = joint_frequencies(lambda: generate(target, tri, prompt, 2, False, g), runs)
    keep = exact * runs >= 5  # chi-square needs expected counts of 5 or more
    expected = np.append(exact[keep], exact[~keep].sum()) * runs
    got = np.append(observed[keep], observed[~keep].sum())
    assert stats.chisquare(got, expected).pvalue > 1e-3
    # the control: the draft model's own samples are told apart from the target's
    draft_alone = Drafter(Scorer("draft", models[1], counters), 0.0, 2)
    control = joint_frequencies(lambda: draft_alone.propose(prompt, 2, False, g)[0], runs)
    assert stats.chisquare(np.append(control[keep], control[~keep].sum()), expected).pvalue < 1e-6
