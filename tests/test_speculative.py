"""Speculative decoding is lossless: greedy output equals the target's own greedy output
token for token at every threshold pair, with KV caches and without; sampled output has
the target's distribution (chi-square over three tokens, so that all three models
propose; tri-decoding and adaptive two-level decoding, with a control that the test
can tell another model's apart); counters are consistent. The KV cache gives the full
forward pass's logits at every position, and rolled back then extended, those of a fresh
prefill. Small CharLMs, no training needed."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from experiments.lm.model import CharLM, KVCache, ModelConfig
from experiments.lm.speculative import Cascade, Counters, Drafter, Scorer, generate
from experiments.tridecoding import expected_tokens

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


def decoder(
    models,
    kind: str,
    small_threshold: float = 0.5,
    draft_threshold: float = 0.5,
    max_little: int = 3,
    max_draft: int = 5,
    cache: bool = True,
) -> tuple[Scorer, Drafter | Cascade, Counters]:
    """The target and a proposer for it, counting into counters of their own, so that what
    one decoder did is never credited to the other: `two_level` (draft -> target, blocks
    of 4), `adaptive_two_level` (draft -> target, adaptive) or `tri` (little -> draft ->
    target, adaptive)."""
    counters = Counters()
    target, draft, little = (
        Scorer(n, m, counters, cache)
        for n, m in zip(("target", "draft", "little"), models, strict=True)
    )
    if kind == "two_level":
        return target, Drafter(draft, threshold=0.0, max_len=4), counters
    if kind == "adaptive_two_level":
        return target, Drafter(draft, draft_threshold, max_draft), counters
    inner = Drafter(little, small_threshold, max_little)
    return target, Cascade(draft, inner, draft_threshold, max_draft), counters


PROMPT = [1, 2, 3, 4, 5]


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_cached_logits_equal_the_full_forward_at_every_position(dtype, tolerance):
    model = family()[0].to(dtype)
    ids = torch.randint(0, VOCAB, (1, 48), generator=torch.Generator().manual_seed(0))
    full = model(ids)[0]
    cache = KVCache()
    cuts = [0, 7, 8, 9, 13, 30, 31, 48]  # a prompt, then one token and blocks of several
    parts = [model(ids[:, a:b], cache)[0] for a, b in itertools.pairwise(cuts)]
    assert len(cache) == 48
    torch.testing.assert_close(torch.cat(parts), full, rtol=tolerance, atol=tolerance)


def test_rolled_back_then_extended_equals_a_fresh_prefill():
    model = family()[0]
    g = torch.Generator().manual_seed(1)
    ids, other = (torch.randint(0, VOCAB, (1, 40), generator=g) for _ in range(2))
    cache = KVCache()
    model(ids[:, :25], cache)
    model(ids[:, 25:32], cache)  # a draft of 7 tokens ...
    cache.truncate(27)  # ... of which 2 were kept
    resumed = model(other[:, 27:40], cache)[0]
    fresh = model(torch.cat([ids[:, :27], other[:, 27:40]], dim=1))[0, 27:]
    assert len(cache) == 40
    torch.testing.assert_close(resumed, fresh, rtol=1e-12, atol=1e-12)


def test_a_cache_past_the_context_is_refused():
    model = family(block=8)[0]
    cache = KVCache()
    model(torch.zeros(1, 6, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="exceed the model's context"):
        model(torch.zeros(1, 3, dtype=torch.long), cache)


@pytest.mark.parametrize("cache", [True, False], ids=["kv-cache", "no-cache"])
@pytest.mark.parametrize(
    ("small", "large"), list(itertools.product([0.0, 0.4, 0.8, 0.99], [0.0, 0.5, 0.95]))
)
def test_greedy_output_is_the_targets_own_for_every_threshold_pair(small, large, cache):
    models = family()
    plain = generate(Scorer("plain", models[0], Counters(), cache=False), None, PROMPT, 40)
    assert generate(Scorer("target", models[0], Counters(), cache), None, PROMPT, 40) == plain
    target, tri, counters = decoder(models, "tri", small, large, cache=cache)
    assert generate(target, tri, PROMPT, 40) == plain
    # both of tri-decoding's levels kept drafts, and the target took several tokens a call
    assert counters.accepted["little"] > 0 and counters.accepted["draft"] > 0
    assert counters.calls["target"] < 40
    if cache:  # the little model's rejected drafts were rolled back in its cache
        assert counters.rolled_back["little"] > 0
    for kind in ("two_level", "adaptive_two_level"):
        target, two_level, counters = decoder(models, kind, small, large, cache=cache)
        assert generate(target, two_level, PROMPT, 40) == plain
        assert counters.accepted["draft"] > 0 and counters.calls["target"] < 40
        assert "little" not in counters.calls  # two-level never asks the little model


class Constant(torch.nn.Module):
    """The same next-token distribution after any prefix, so alpha has a closed form."""

    def __init__(self, probs: list[float]) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(probs, dtype=torch.float64).log())

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        return self.logits.expand(1, ids.shape[1], -1)


def test_alpha_is_the_chance_that_a_reached_draft_token_is_kept():
    # Leviathan et al.: alpha = sum_x min(p(x), q(x)) = 0.2 + 0.3 + 0.2 = 0.7
    p, q = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
    counters = Counters()
    target = Scorer("target", Constant(p), counters)
    drafter = Drafter(Scorer("draft", Constant(q), counters), threshold=0.0, max_len=4)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        generate(target, drafter, [0], 200, greedy=False, generator=g)
    reached = counters.accepted["draft"] + counters.rejections["draft"]
    assert counters.alpha("draft") == pytest.approx(0.7, abs=4 * (0.21 / reached) ** 0.5)
    # the share of drafted tokens kept counts those after a rejection, never reached:
    # E = (a + a^2 + a^3 + a^4) / 4 = 0.44 with four drafted
    assert counters.accepted["draft"] / counters.generated["draft"] < 0.5


def test_tokens_per_target_call_match_the_closed_form_for_a_known_alpha():
    # constant p and q: alpha = 0.7 exactly, draws i.i.d., so with drafts of 4 a target call
    # yields (1 - 0.7^5) / 0.3 = 2.7731 tokens on average (Leviathan et al., eq. 1)
    counters = Counters()
    target = Scorer("target", Constant([0.5, 0.3, 0.2]), counters)
    drafter = Drafter(Scorer("draft", Constant([0.2, 0.3, 0.5]), counters), 0.0, max_len=4)
    g = torch.Generator().manual_seed(0)
    runs, tokens = 40, 200
    for _ in range(runs):
        generate(target, drafter, [0], tokens, greedy=False, generator=g)
    measured = runs * tokens / counters.calls["target"]
    lengths = counters.draft_lengths["draft"]
    assert len(lengths) == counters.calls["target"] and max(lengths) == 4
    expected = expected_tokens(0.7, lengths)  # the last call of a run may draft fewer
    assert expected == pytest.approx((1 - 0.7**5) / 0.3, rel=0.01)
    assert measured == pytest.approx(expected, rel=0.03)  # sd of the mean about 0.8%
    # the same draws under a wrong acceptance model (alpha 0.5) miss by far more
    assert abs(measured - expected_tokens(0.5, lengths)) > 10 * abs(measured - expected)


def test_step_time_leaves_prompt_prefills_out():
    counters = Counters(calls={"m": 10}, seconds={"m": 3.0}, prefills={"m": 2},
                        prefill_seconds={"m": 2.2})  # fmt: skip
    assert counters.step_time("m") == pytest.approx(0.8 / 8)
    assert math.isnan(counters.step_time("other"))


def test_counters_are_consistent():
    models = family()
    alone = Counters()  # the control: plain decoding calls the target once per token
    assert len(generate(Scorer("target", models[0], alone), None, PROMPT, 40)) == 40
    assert alone.calls["target"] == 40
    target, tri, counters = decoder(models, "tri")
    out = generate(target, tri, PROMPT, 40)
    assert len(out) == 40
    for level in ("little", "draft"):
        assert 0 < counters.accepted[level] <= counters.generated[level]
    # each target call appends the draft tokens it kept and one token of its own
    assert counters.accepted["draft"] + counters.calls["target"] == 40
    assert counters.calls["target"] < 40 and counters.seconds["target"] > 0


LENGTH = 3  # tokens per sample: enough for the little model to propose to the draft


def joint_frequencies(sample, runs: int) -> np.ndarray:
    counts = np.zeros((VOCAB,) * LENGTH)
    for _ in range(runs):
        counts[tuple(sample())] += 1
    return counts.ravel()


def exact_joint(model: CharLM, prompt: list[int]) -> np.ndarray:
    """P(t1, t2, t3 | prompt) under `model`, by enumeration (row-major, as ravel)."""
    exact = np.zeros((VOCAB,) * LENGTH)
    with torch.no_grad():
        for a, b in itertools.product(range(VOCAB), repeat=2):
            rows = torch.softmax(model(torch.tensor([prompt + [a, b]]))[0, -LENGTH:], -1)
            exact[a, b] = float(rows[0, a]) * float(rows[1, b]) * rows[2].numpy()
    return exact.ravel()


@pytest.mark.parametrize("kind", ["tri", "adaptive_two_level"])
def test_sampled_tokens_follow_the_targets_distribution(kind):
    models = family(block=8)
    target, tri, counters = decoder(models, kind, 0.3, 0.3, max_little=2, max_draft=2)
    prompt = [0]
    exact = exact_joint(models[0], prompt)
    g = torch.Generator().manual_seed(1)
    runs = 3000
    observed = joint_frequencies(lambda: generate(target, tri, prompt, LENGTH, False, g), runs)
    for level in ("little", "draft") if kind == "tri" else ("draft",):  # all proposed, verified
        assert counters.generated[level] >= runs and counters.accepted[level] > 0
        assert counters.accepted[level] < counters.generated[level]  # ... and rejected some
    keep = exact * runs >= 5  # chi-square needs expected counts of 5 or more
    expected = np.append(exact[keep], exact[~keep].sum()) * runs
    got = np.append(observed[keep], observed[~keep].sum())
    assert stats.chisquare(got, expected).pvalue > 1e-3
    # the control: the draft model's own samples are told apart from the target's
    draft_alone = Drafter(Scorer("draft", models[1], Counters()), 0.0, LENGTH)
    control = joint_frequencies(lambda: draft_alone.propose(prompt, LENGTH, False, g)[0], runs)
    assert stats.chisquare(np.append(control[keep], control[~keep].sum()), expected).pvalue < 1e-6
