"""LM evaluation, baseline vs test-time training (SCIENCE.md section 4, seed notebook 003).

Evaluates a character LM trained by another sweep, named in the spec's
`inputs: {models: ...}`: the trial of seed s evaluates that sweep's model of
seed s, picked further by every `model_<key>` param that is set (`model_size:
target` finds the trial whose `size` is target; `model_activation` and
`model_beta` pick among the models of an activations sweep). `variant` is
`baseline` (the model as trained) or `ttt` (test-time training: `ttt_steps`
steps of SGD at `ttt_lr` on the text already read, reset for each pair and
each document).

Minimal pairs (`experiments/lm/pairs.py`, built from the validation text, the
same for every trial): lexical, syntactic and story accuracy, summed and
length-normalised, each with a Wilson 95% interval over its n pairs. Long
context: `n_documents` validation documents of `document_len` characters; per
position loss, binned every `loss_bin` positions into the metrics table
(step = position), and the least-squares slope of the mean curve from
`slope_from` on (default: the model's block size, where the baseline's context
stops growing), with a bootstrap interval over documents.

Parameters: `LMEvalParams` below (`sweep experiments lmeval`).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from analysis.lmeval import REPORT, report_section
from experiments.lm import metrics, pairs
from experiments.lm.activations import Activation
from experiments.lm.data import DEFAULT_CORPUS, CorpusSource, load_corpus
from experiments.lm.model import CharLM
from experiments.lm.scoring import Adapter, document_losses, score_pairs
from orchestrator import Trial, experiment

Variant = Literal["baseline", "ttt"]
VARIANTS: tuple[str, ...] = get_args(Variant)
MODEL_PREFIX = "model_"  # a param model_<key> picks the input's trial whose <key> matches


class LMEvalParams(BaseModel):
    model_config = ConfigDict(extra="allow")
    extra_prefixes: ClassVar[tuple[str, ...]] = (MODEL_PREFIX,)  # any model_<key> filter

    variant: Variant = Field(
        "baseline", description="baseline (as trained) or ttt (test-time training)"
    )
    ttt_lr: float = Field(0.01, gt=0, description="SGD learning rate of test-time training")
    ttt_steps: int = Field(1, ge=1, description="SGD steps of test-time training per window")
    model_size: str | None = Field(
        None, description="evaluate the input's model whose `size` is this (little/draft/target)"
    )
    model_activation: Activation | None = Field(
        None, description="evaluate the input's model whose `activation` is this"
    )
    model_beta: float | None = Field(
        None, gt=0, description="evaluate the input's model whose `beta` is this (smelu)"
    )
    corpus: CorpusSource = DEFAULT_CORPUS
    n_pairs: int = Field(200, ge=1, description="most minimal pairs per task")
    pair_context: int = Field(64, ge=1, description="characters of context before each pair")
    n_documents: int = Field(16, ge=1, description="long validation documents scored")
    document_len: int = Field(2048, ge=1, description="characters per document")
    loss_bin: int = Field(64, ge=1, description="positions per bin of the loss-by-position curve")
    slope_from: int | None = Field(
        None, ge=1, description="first position of the slope fit (default: the block size)"
    )
    data_seed: int = Field(0, ge=0, description="draws the minimal pairs (not the seed)")


# `sweep report` and `sweep compare` add benchmark bars, loss-by-position curves, slopes.
@experiment(params=LMEvalParams, report=REPORT, sections=[report_section])
def evaluate(config: dict[str, Any], trial: Trial) -> dict[str, Any]:
    adapter = Adapter(config["ttt_lr"], config["ttt_steps"]) if config["variant"] == "ttt" else None
    model = load_model(trial, config)
    corpus = load_corpus(config["corpus"])
    text = "".join(corpus.chars[i] for i in corpus.val.tolist())
    index = {c: i for i, c in enumerate(corpus.chars)}

    def encode(s: str) -> torch.Tensor:
        return torch.tensor([index[c] for c in s], dtype=torch.long, device=trial.device)

    started = time.perf_counter()
    result: dict[str, Any] = {}
    for task in pairs.TASKS:
        items = pairs.build(
            task,
            text,
            config["n_pairs"],
            config["pair_context"],
            config["data_seed"],
        )
        result.update(pair_metrics(task, score_pairs(model, items, encode, adapter)))
    documents = long_documents(corpus.val, config["n_documents"], config["document_len"])
    losses = document_losses(model, [d.to(trial.device) for d in documents], adapter)
    result.update(position_metrics(losses, config, model.cfg.block_size, trial))
    result["diverged"] = int(not np.isfinite(losses).all())  # TTT can blow a model up
    return {**result, "eval_time_s": time.perf_counter() - started, "eval_text_sha1": _sha1(text)}


def load_model(trial: Trial, config: dict[str, Any]) -> CharLM:
    """The `models` input's model of this trial's seed and `model_<key>` values (those
    left at None pick nothing)."""
    models = trial.inputs.get("models")
    if models is None:
        raise ValueError(
            "lmeval needs the trained models: inputs: {models: results/<training sweep>}"
        )
    match = {
        key.removeprefix(MODEL_PREFIX): value
        for key, value in config.items()
        if key.startswith(MODEL_PREFIX) and value is not None
    }
    path = models.artifact(models.find(seed=trial.seed, **match), "model.pt")
    return CharLM.read(path, trial.device)


def pair_metrics(task: str, scores: dict[str, np.ndarray]) -> dict[str, float]:
    n = len(scores["correct"])
    out: dict[str, float] = {f"{task}_pairs": n}
    for suffix in ("", "_norm"):
        accuracy = metrics.pair_accuracy(scores["correct" + suffix], scores["distractor" + suffix])
        low, high = metrics.wilson_interval(accuracy, n)
        out.update(
            {
                f"{task}_acc{suffix}": accuracy,
                f"{task}_acc{suffix}_low": low,
                f"{task}_acc{suffix}_high": high,
            }
        )
    return out


def long_documents(val: torch.Tensor, n: int, length: int) -> list[torch.Tensor]:
    """n non-overlapping, evenly spaced documents of `length` tokens from the validation ids."""
    if n * length > len(val):
        raise ValueError(
            f"{n} documents of {length} characters need {n * length}; "
            f"the validation text has {len(val)}"
        )
    starts = np.linspace(0, len(val) - length, n).astype(int)
    return [val[s : s + length] for s in starts]


def position_metrics(
    losses: np.ndarray, config: dict[str, Any], block: int, trial: Trial
) -> dict[str, float]:
    """Per-bin mean loss into the metrics table (step = the bin's first position); the
    slope from `slope_from` on, its bootstrap interval; early and long-context loss."""
    width = config["loss_bin"]
    starts, per_document = metrics.binned(losses, width)
    for start, value in zip(starts, per_document.mean(axis=0), strict=True):
        trial.report(step=int(start) + 1, position_loss=float(value))  # loss[0] is position 1
    begin = block if config["slope_from"] is None else config["slope_from"]
    late = starts + 1 >= begin
    if late.sum() < 2:
        raise ValueError(
            f"slope_from {begin}: fewer than two bins of {width} after it; lengthen document_len"
        )
    slope, low, high = metrics.slope_interval(starts[late] + width / 2, per_document[:, late])
    return {
        "loss_slope": slope,
        "loss_slope_low": low,
        "loss_slope_high": high,
        "early_loss": float(losses[:, : block - 1].mean()),
        "long_loss": float(losses[:, begin - 1 :].mean()),
    }


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()
