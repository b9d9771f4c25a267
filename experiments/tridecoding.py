"""Adaptive tri-decoding (SCIENCE.md section 2, seed notebook 001).

Three character LMs of increasing size (little, draft, target) come from a
training sweep named in the spec's `inputs: {models: ...}` (see
experiments/sweeps/lm-sizes.yaml); a trial of seed s uses the models of seed s.
Each trial decodes the same held-out prompts several ways, interleaved (rotating which
goes first) so that machine noise hits all alike:
  target              the target alone (the reference, one forward pass per token);
  tri                 little -> draft -> target, both levels drafting adaptively
                      (small_draft_threshold, draft_target_threshold, max lengths);
  adaptive_two_level  draft -> target with tri's confidence rule at that level: what the
                      little model adds, everything else equal;
  two_level_g<g>      draft -> target with fixed drafts of g = 1, 2, 4, ... tokens.
Every model keeps a KV cache (`kv_cache: false` recomputes the whole sequence on every
call, for comparison): it scores only new tokens, and rejected ones are rolled back.
Per decoder: the measured speedup over the target alone (wall time, prompt prefills
included), the speedup Leviathan et al.'s formula predicts from the measured alpha, the
draft lengths and the measured cost of a drafted token, with the decoder's measured
prefills added (so both sides include them), and tokens per target call against the
formula's expectation, which tells a failing acceptance model from a failing cost
model. Tri-decoding's metrics are unprefixed (`speedup`), the baselines' carry their
name (`adaptive_two_level_speedup`, `two_level_g4_speedup`). Greedy: whether every
decoder's output equals the target's own.

Parameters: `TriDecodingParams` below (`sweep experiments tridecoding`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field

from analysis.tridecoding import REPORT, report_section
from experiments.lm.data import DEFAULT_CORPUS, CorpusSource, eval_windows, load_corpus
from experiments.lm.model import CharLM
from experiments.lm.speculative import Cascade, Counters, Drafter, Scorer, generate
from orchestrator import Trial, experiment

SIZES = ("little", "draft", "target")


class TriDecodingParams(BaseModel):
    small_draft_threshold: float = Field(
        ge=0, le=1, description="little drafts while its confidence stays at least this"
    )
    draft_target_threshold: float = Field(
        ge=0, le=1, description="draft proposes to target while its confidence stays at least this"
    )
    max_little: int = Field(4, ge=1, description="longest little -> draft block")
    max_draft: int = Field(8, ge=1, description="longest draft -> target block")
    two_level_max: int = Field(
        8, ge=1, description="fixed two-level baselines draft 1, 2, 4, ... up to this many tokens"
    )
    n_prompts: int = Field(8, ge=1, description="held-out prompts decoded")
    prompt_len: int = Field(32, ge=1, description="characters per prompt")
    n_tokens: int = Field(64, ge=1, description="characters generated per prompt")
    greedy: bool = Field(True, description="argmax decoding (else sampling)")
    kv_cache: bool = Field(
        True, description="keep each model's KV cache (else rescore the whole sequence per call)"
    )
    corpus: CorpusSource = DEFAULT_CORPUS


def load_models(trial: Trial) -> dict[str, CharLM]:
    """The three sizes of this trial's seed, from the `models` input sweep."""
    models = trial.inputs["models"]
    loaded = {}
    for size in SIZES:
        path = models.artifact(models.find(size=size, seed=trial.seed), "model.pt")
        loaded[size] = CharLM.read(path, trial.device)
    return loaded


def gammas(most: int) -> list[int]:
    """The fixed two-level baselines' draft lengths: 1, 2, 4, ... up to `most`."""
    return [2**k for k in range(most.bit_length()) if 2**k <= most]


def decoder_names(config: dict[str, Any]) -> list[str]:
    """The decoders a trial runs: target alone first (the reference), then the others."""
    fixed = [f"two_level_g{g}" for g in gammas(config["two_level_max"])]
    return ["target", "tri", "adaptive_two_level", *fixed]


# `sweep report` adds this family's directions, units and heat map section.
@experiment(params=TriDecodingParams, report=REPORT, sections=[report_section])
def decode(config: dict[str, Any], trial: Trial) -> dict[str, Any]:
    models = load_models(trial)
    prompt_len, n_tokens = config["prompt_len"], config["n_tokens"]
    context = min(m.cfg.block_size for m in models.values())
    if prompt_len + n_tokens > context:
        raise ValueError(
            f"prompt_len + n_tokens = {prompt_len + n_tokens} exceeds the models' context "
            f"({context}); every position must be scored with its whole prefix"
        )
    corpus = load_corpus(config["corpus"])
    prompts = eval_windows(corpus.val, prompt_len, config["n_prompts"])[0].tolist()
    greedy = config["greedy"]
    generator = torch.Generator().manual_seed(trial.seed)
    names = decoder_names(config)
    counters = {name: Counters() for name in names}
    decoders = {name: _decoder(name, models, config, counters[name]) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    outputs: dict[str, list[list[int]]] = {name: [] for name in names}
    for index, prompt in enumerate(prompts):
        turn = index % len(names)
        for name in names[turn:] + names[:turn]:  # rotate who goes first
            target, proposer = decoders[name]
            started = time.perf_counter()
            outputs[name].append(generate(target, proposer, prompt, n_tokens, greedy, generator))
            seconds[name] += time.perf_counter() - started
    tokens = len(prompts) * n_tokens
    timing = Timing(counters["target"], seconds["target"], tokens)
    return {
        **_counts(counters["tri"], tokens),
        **_tri_costs(counters, timing),
        **{
            key: value
            for name in names[1:]
            for key, value in _decoder_metrics(name, counters[name], seconds[name], timing).items()
        },
        "target_only_tokens_per_s": tokens / seconds["target"],
        **({"matches_target": _matches(outputs)} if greedy else {}),
    }


def _decoder(
    name: str, models: dict[str, CharLM], config: dict[str, Any], counters: Counters
) -> tuple[Scorer, Drafter | Cascade | None]:
    target, draft, little = (
        Scorer(size, models[size], counters, config["kv_cache"]) for size in reversed(SIZES)
    )
    if name == "target":
        return target, None
    if name == "adaptive_two_level":  # the draft alone, with tri's confidence rule
        return target, Drafter(draft, config["draft_target_threshold"], config["max_draft"])
    if name.startswith("two_level_g"):
        return target, Drafter(draft, threshold=0.0, max_len=int(name.removeprefix("two_level_g")))
    inner = Drafter(little, config["small_draft_threshold"], config["max_little"])
    outer = Cascade(draft, inner, config["draft_target_threshold"], config["max_draft"])
    return target, outer


@dataclass(frozen=True)
class Timing:
    """Target-only decoding, the reference every decoder is measured and predicted against."""

    alone: Counters
    seconds: float  # wall time, prefills included
    tokens: int

    @property
    def step(self) -> float:
        """One decoding step of the target alone (a prefill left out)."""
        return self.alone.step_time("target")

    def predicted(self, speedup: float, prefill_seconds: float) -> float:
        """Target-only time over a decoder's predicted time: its decoding at the formula's
        `speedup` over the target alone's, plus its own measured prompt prefills, so that
        prefills sit on both sides as in the measured speedup."""
        decoding = self.seconds - self.alone.all_prefill_seconds()
        return self.seconds / (prefill_seconds + decoding / speedup)


def _prefix(name: str) -> str:
    """Metric names: tri-decoding's bare (`speedup`), the baselines' prefixed."""
    return "" if name == "tri" else f"{name}_"


def _decoder_metrics(name: str, counters: Counters, seconds: float, timing: Timing) -> dict:
    """A speculative decoder's measured and predicted speedup over the target alone, its
    tokens per target call against the formula's expectation, and its alpha."""
    prefix, drafter = _prefix(name), "draft"  # the model whose tokens the target verifies
    calls, lengths = counters.calls["target"], counters.draft_lengths.get(drafter, [])
    alpha = counters.alpha(drafter)
    cost = _cost_per_drafted(counters, name) / timing.step
    formula = predicted_speedup(alpha, lengths, cost)
    metrics = {
        f"{prefix}speedup": timing.seconds / seconds,
        f"{prefix}predicted_speedup": timing.predicted(formula, counters.all_prefill_seconds()),
        f"{prefix}tokens_per_target_call": timing.tokens / calls,
        f"{prefix}expected_tokens_per_target_call": expected_tokens(alpha, lengths),
        f"{prefix}tokens_per_s": timing.tokens / seconds,
    }
    if name != "tri":  # tri's own are named by level (_counts, _tri_costs)
        metrics |= {f"{prefix}alpha": alpha, f"{prefix}acceptance_rate": _rate(counters, drafter)}
    return metrics


def _cost_per_drafted(counters: Counters, name: str) -> float:
    """Seconds of drafting per drafted token (prefills left out): the draft model's steps,
    and for tri-decoding the little model's too."""
    levels = ("little", "draft") if name == "tri" else ("draft",)
    drafted = counters.generated.get("draft", 0)
    return sum(counters.step_seconds(level) for level in levels) / max(drafted, 1)


def _counts(counters: Counters, tokens: int) -> dict[str, float]:
    """What tri-decoding did: tokens proposed and kept at each level, target calls."""
    return {
        "little_generated_tokens": counters.generated.get("little", 0),
        "little_accepted_tokens": counters.accepted.get("little", 0),
        "draft_generated_tokens": counters.generated.get("draft", 0),
        "draft_accepted_tokens": counters.accepted.get("draft", 0),
        "little_acceptance_rate": _rate(counters, "little"),
        "draft_acceptance_rate": _rate(counters, "draft"),
        "target_calls": counters.calls["target"],
    }


def _tri_costs(counters: dict[str, Counters], timing: Timing) -> dict[str, float]:
    """Tri-decoding's alpha at each level and the measured cost ratios: a drafted token of
    the little -> draft cascade, a step of the draft model (from the adaptive two-level
    decoder, where it proposes one token a pass) and of the little model, each over a step
    of its verifier (prompt prefills left out)."""
    tri = counters["tri"]
    draft_step = counters["adaptive_two_level"].step_time("draft")
    return {
        "little_alpha": tri.alpha("little"),
        "draft_alpha": tri.alpha("draft"),
        "little_cost_ratio": tri.step_time("little") / draft_step,
        "draft_cost_ratio": draft_step / timing.step,
        "cost_ratio": _cost_per_drafted(tri, "tri") / timing.step,
    }


def expected_tokens(alpha: float, lengths: Sequence[int]) -> float:
    """Leviathan et al.'s expected tokens per verifier call, (1 - a^(g+1)) / (1 - a), for
    acceptance a, averaged over the calls' draft lengths g (the formula is concave in g, so
    it is not taken at the mean length); g + 1 at a = 1; 1 with no calls."""
    if not len(lengths):
        return 1.0
    g = np.asarray(lengths, dtype=float)
    per_call = g + 1 if alpha >= 1 else (1 - alpha ** (g + 1)) / (1 - alpha)
    return float(np.mean(per_call))


def predicted_speedup(alpha: float, lengths: Sequence[int], cost: float) -> float:
    """Leviathan et al.'s expected speedup of decoding, E[tokens per call] / E[g c + 1], for
    acceptance a, the calls' draft lengths g and cost ratio c (a drafted token's time over
    a target step; verifying a draft costs one target step)."""
    if not len(lengths):
        return 1.0
    return expected_tokens(alpha, lengths) / (float(np.mean(lengths)) * cost + 1)


def _rate(counters: Counters, level: str) -> float:
    generated = counters.generated.get(level, 0)
    return counters.accepted.get(level, 0) / generated if generated else float("nan")


def _matches(outputs: dict[str, list[list[int]]]) -> float:
    """Share of prompts whose outputs from every speculative decoder equal the target's."""
    reference = outputs["target"]
    same = [all(outputs[name][i] == ref for name in outputs) for i, ref in enumerate(reference)]
    return sum(same) / len(same)
