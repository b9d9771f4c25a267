"""Reproducibility vs activation (SCIENCE.md section 1, seed notebook 002).

Each trial trains the character LM with one activation and one seed (the seed
sets the initial weights and the batch order), then saves its predicted
distributions on a fixed set of validation positions that every trial shares.
After the sweep, `analysis.reproducibility` compares every pair of seeds of the
same config on those positions and writes `pairs/`.

Parameters: `ReproducibilityParams` below (`sweep experiments reproducibility`).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, model_validator

from analysis.reproducibility import REPORT, report_section, write_pairs
from experiments.lm.activations import Activation
from experiments.lm.data import DEFAULT_CORPUS, CorpusSource, batches, eval_windows, load_corpus
from experiments.lm.model import CharLM, ModelConfig
from experiments.stacked import Stack
from orchestrator import Trial, experiment


class ReproducibilityParams(BaseModel):
    activation: Activation = Field(description="MLP activation")
    beta: float | None = Field(
        None, gt=0, description="SmeLU's half-width (smelu only; 1.0 when not given)"
    )
    corpus: CorpusSource = DEFAULT_CORPUS
    steps: int = Field(300, ge=1, description="optimizer steps")
    eval_every: int = Field(50, ge=1, description="steps between validation losses")
    batch_size: int = Field(32, ge=1, description="windows per step")
    block_size: int = Field(64, ge=1, description="context length, characters")
    n_layer: int = Field(2, ge=1, description="transformer blocks")
    n_head: int = Field(2, ge=1, description="attention heads per block")
    n_embd: int = Field(64, ge=1, description="embedding width; a multiple of n_head")
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate")
    eval_windows: int = Field(32, ge=1, description="validation windows every trial shares")
    size: str | None = Field(None, description="a label only (little/draft/target in lm-sizes)")

    @model_validator(mode="after")
    def _consistent(self) -> ReproducibilityParams:
        if self.activation != "smelu" and self.beta is not None:
            raise ValueError(f"beta applies to smelu only; {self.activation} would ignore it")
        if self.activation == "smelu" and self.beta is None:
            self.beta = 1.0
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) is not a multiple of n_head ({self.n_head})")
        return self


def build_model(config: dict[str, Any], vocab_size: int) -> CharLM:
    return CharLM(
        ModelConfig(
            vocab_size=vocab_size,
            block_size=config["block_size"],
            n_layer=config["n_layer"],
            n_head=config["n_head"],
            n_embd=config["n_embd"],
            activation=config["activation"],
            beta=config["beta"] or 1.0,  # unused but by smelu
        )
    )


@torch.no_grad()
def predict(models: Stack, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Every member's next-token distributions at every position of x:
    (members, windows * block, vocab)."""
    models.train(False)
    probs = [
        torch.softmax(models(x[i : i + batch], shared=True), dim=-1)
        for i in range(0, len(x), batch)
    ]
    models.train()
    return torch.cat(probs, dim=1).flatten(1, 2)


def nll(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the targets under each member's probs
    (members, positions, vocab): a tensor of one value per member, on their device."""
    picked = probs.gather(-1, targets.expand(len(probs), -1).unsqueeze(-1)).squeeze(-1)
    return -torch.log(picked.clamp_min(1e-12)).mean(dim=1)


def train_lms(configs: list[dict[str, Any]], trials: list[Trial]) -> list[dict[str, Any]]:
    """Train one model per trial, all at once (a bundle's members: experiments/stacked.py).
    They may differ in their seeds only (`varies` below, checked before a run). Each
    member's initial weights and batch order come from CPU generators seeded with its own
    seed, as when it trains alone, so a seed trains on the same batches from the same
    weights, alone or fused, on any device. Timings are shared: a member's `train_time_s`
    is the bundle's training time over its members, its `tokens_per_s` its own tokens over
    that share (the bundle's rate); `diverged` is 1 where the validation loss is not
    finite."""
    config, device = configs[0], trials[0].device
    corpus = load_corpus(config["corpus"])
    seeds = [trial.seed for trial in trials]
    models = Stack([_initial(config, corpus.vocab_size, seed).to(device) for seed in seeds])
    block, batch = config["block_size"], config["batch_size"]
    optimizer = torch.optim.AdamW(models.parameters(), lr=config["lr"])
    eval_x, eval_y = eval_windows(corpus.val.to(device), block, config["eval_windows"])
    targets = eval_y.reshape(-1)
    steps, every = config["steps"], config["eval_every"]
    data = corpus.train.to(device)
    orders = [batches(data, block, batch, steps, torch.Generator().manual_seed(s)) for s in seeds]
    started = time.perf_counter()
    for step, pairs in enumerate(zip(*orders, strict=True)):
        x, y = (torch.stack(parts) for parts in zip(*pairs, strict=True))
        logits = models(x)
        losses = F.cross_entropy(logits.flatten(0, 2), y.flatten(), reduction="none")
        losses = losses.view(len(seeds), -1).mean(dim=1)  # each member's own mean loss
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # summed, not averaged: each member gets its own gradient
        optimizer.step()
        if step % every == 0 or step == steps - 1:
            val_losses = nll(predict(models, eval_x), targets)
            for trial, loss, val_loss in zip(trials, losses, val_losses, strict=True):
                trial.report(step=step, train_loss=loss, val_loss=val_loss)
    share = (time.perf_counter() - started) / len(trials)  # a fused member's part of it
    probs = predict(models, eval_x)
    val_losses = nll(probs, targets).tolist()
    finals = []
    for member, trial in enumerate(trials):
        trial.save_artifact("probs.npy", probs[member].cpu().numpy().astype(np.float32))
        trial.save_artifact("targets.npy", targets.cpu().numpy().astype(np.int32))
        trial.save_artifact("model.pt", _checkpoint(models, member))
        finals.append(
            {
                "val_loss": val_losses[member],
                "diverged": int(not math.isfinite(val_losses[member])),
                "train_time_s": share,
                "tokens_per_s": steps * batch * block / share,
                "eval_positions": len(targets),
                "eval_inputs_sha1": hashlib.sha1(eval_x.cpu().numpy().tobytes()).hexdigest(),
            }
        )
    return finals


def _initial(config: dict[str, Any], vocab_size: int, seed: int) -> CharLM:
    torch.manual_seed(seed)
    return build_model(config, vocab_size)


def _checkpoint(models: Stack, member: int) -> dict:
    """What `CharLM.load` reads: a member's weights, as a lone model's `checkpoint()`."""
    return {"config": asdict(models.base.cfg), "state_dict": models.state_dict(member)}


@experiment(
    params=ReproducibilityParams,
    fused=train_lms,  # a bundle of seeds (spec `bundle:`) trains its members together
    varies=["seed"],
    after_sweep=write_pairs,  # the pairs of seeds, into <sweep>/pairs/
    report=REPORT,  # `sweep report`: metric directions, criteria
    sections=[report_section],  # and the prediction differences section
)
def train_lm(config: dict[str, Any], trial: Trial) -> dict[str, Any]:
    """Train one model on `trial.device`: `train_lms` with one member."""
    return train_lms([config], [trial])[0]


def load_model(sweep_dir: str | Path, trial_id: str) -> CharLM:
    """The trained model of one trial of a reproducibility sweep, ready for eval."""
    path = Path(sweep_dir) / "artifacts" / trial_id / "model.pt"
    return CharLM.read(path)
