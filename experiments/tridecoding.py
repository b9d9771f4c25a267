"""Adaptive tri-decoding (SCIENCE.md section 2, seed notebook 001).

Three character LMs of increasing size (little, draft, target) come from a
training sweep named in the spec's `inputs: {models: ...}` (see
experiments/sweeps/lm-sizes.yaml); a trial of seed s uses the models of seed s.
Each trial decodes the same held-out prompts three ways, interleaved so that
machine noise hits all three alike:
  target      the target alone (the reference, one forward pass per token);
  two_level   draft -> target speculative decoding, fixed draft length;
  tri         little -> draft -> target, both levels drafting adaptively
              (small_draft_threshold, draft_target_threshold, max lengths).
Every model keeps a KV cache (`kv_cache: false` recomputes the whole sequence on every
call, for comparison): it scores only new tokens, and rejected ones are rolled back.
It reports the counters, acceptance rates, tokens per target call, tokens/s of
each, the measured speedups, the measured cost ratios (a drafting step's time over a
step of its verifier, at each level), the per-token acceptance (alpha) at each level,
the speedups SCIENCE.md's formula predicts from them for both speculative decoders,
and (greedy) whether the output equals the target's own.

Parameters: `TriDecodingParams` below (`sweep experiments tridecoding`).
"""

from __future__ import annotations

import time
from typing import Any

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
    two_level_draft: int = Field(4, ge=1, description="fixed block of the two-level baseline")
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
    counters = {name: Counters() for name in ("target", "two_level", "tri")}
    decoders = {name: _decoder(name, models, config, counters[name]) for name in counters}
    seconds = dict.fromkeys(counters, 0.0)
    outputs: dict[str, list[list[int]]] = {name: [] for name in counters}
    for index, prompt in enumerate(prompts):
        names = list(counters)
        for name in names[index % 3 :] + names[: index % 3]:  # rotate who goes first
            target, proposer = decoders[name]
            started = time.perf_counter()
            outputs[name].append(generate(target, proposer, prompt, n_tokens, greedy, generator))
            seconds[name] += time.perf_counter() - started
    tokens = len(prompts) * n_tokens
    return {
        **_counts(counters["tri"], tokens),
        **_predictions(counters),
        "tokens_per_s": tokens / seconds["tri"],
        "target_only_tokens_per_s": tokens / seconds["target"],
        "two_level_tokens_per_s": tokens / seconds["two_level"],
        "speedup": seconds["target"] / seconds["tri"],
        "two_level_speedup": seconds["target"] / seconds["two_level"],
        "speedup_vs_two_level": seconds["two_level"] / seconds["tri"],
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
    if name == "two_level":
        return target, Drafter(draft, threshold=0.0, max_len=config["two_level_draft"])
    inner = Drafter(little, config["small_draft_threshold"], config["max_little"])
    outer = Cascade(draft, inner, config["draft_target_threshold"], config["max_draft"])
    return target, outer


def _counts(counters: Counters, tokens: int) -> dict[str, float]:
    """What tri-decoding did: tokens proposed and kept at each level, target calls."""
    calls = counters.calls["target"]
    return {
        "little_generated_tokens": counters.generated.get("little", 0),
        "little_accepted_tokens": counters.accepted.get("little", 0),
        "draft_generated_tokens": counters.generated.get("draft", 0),
        "draft_accepted_tokens": counters.accepted.get("draft", 0),
        "little_acceptance_rate": _rate(counters, "little"),
        "draft_acceptance_rate": _rate(counters, "draft"),
        "target_calls": calls,
        "tokens_per_target_call": tokens / calls,
    }


def _predictions(counters: dict[str, Counters]) -> dict[str, float]:
    """Measured cost ratios, Leviathan et al.'s alpha at each level, and the speedups the
    formula predicts from them for both speculative decoders. A cost ratio is a drafting
    step's time over a step of its verifier decoding alone, one token per pass (prompt
    prefills left out); the formula takes verifying a draft to cost one such step."""
    tri, two_level, alone = counters["tri"], counters["two_level"], counters["target"]
    target_step = alone.step_time("target")
    draft_step = two_level.step_time("draft")  # the draft model proposing, one token a pass
    draft_cost = draft_step / target_step
    drafted = tri.generated.get("draft", 0)
    per_drafted = (tri.step_seconds("little") + tri.step_seconds("draft")) / max(drafted, 1)
    cost = per_drafted / target_step  # a token of the little -> draft cascade
    alpha, two_level_alpha = tri.alpha("draft"), two_level.alpha("draft")
    two_level_gamma = two_level.generated.get("draft", 0) / two_level.calls["target"]
    return {
        "little_alpha": tri.alpha("little"),
        "draft_alpha": alpha,
        "little_cost_ratio": tri.step_time("little") / draft_step,
        "draft_cost_ratio": draft_cost,
        "cost_ratio": cost,
        "predicted_speedup": predicted_speedup(alpha, drafted / tri.calls["target"], cost),
        "two_level_acceptance_rate": _rate(two_level, "draft"),
        "two_level_alpha": two_level_alpha,
        "two_level_predicted_speedup": predicted_speedup(
            two_level_alpha, two_level_gamma, draft_cost
        ),
    }


def predicted_speedup(alpha: float, gamma: float, cost: float) -> float:
    """(1 - a^(g+1)) / ((1 - a)(g c + 1)): Leviathan et al.'s expected speedup for
    acceptance rate a, draft length g and cost ratio c (a = 1 taken as its limit; no
    draft, no speedup)."""
    if gamma == 0:
        return 1.0
    expected_tokens = gamma + 1 if alpha >= 1 else (1 - alpha ** (gamma + 1)) / (1 - alpha)
    return expected_tokens / (gamma * cost + 1)


def _rate(counters: Counters, level: str) -> float:
    generated = counters.generated.get(level, 0)
    return counters.accepted.get(level, 0) / generated if generated else float("nan")


def _matches(outputs: dict[str, list[list[int]]]) -> float:
    """Share of prompts whose tri and two-level outputs both equal the target's own."""
    same = [
        tri == ref and two == ref
        for ref, two, tri in zip(
            outputs["target"], outputs["two_level"], outputs["tri"], strict=True
        )
    ]
    return sum(same) / len(same)
