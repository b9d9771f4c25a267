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
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator

from analysis.reproducibility import REPORT, report_section, write_pairs
from experiments.lm.activations import Activation
from experiments.lm.data import DEFAULT_CORPUS, CorpusSource, batches, eval_windows, load_corpus
from experiments.lm.model import CharLM, ModelConfig
from orchestrator.params import parameters


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
def predict(model: CharLM, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Next-token distributions at every position of x: (windows * block, vocab)."""
    model.eval()
    probs = [torch.softmax(model(x[i : i + batch]), dim=-1) for i in range(0, len(x), batch)]
    model.train()
    return torch.cat(probs).reshape(-1, model.cfg.vocab_size)


def nll(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the targets (a 0-d tensor, on their device)."""
    rows = torch.arange(len(targets), device=targets.device)
    return -torch.log(probs[rows, targets].clamp_min(1e-12)).mean()


@parameters(ReproducibilityParams)
def train_lm(config: dict[str, Any], trial: Any) -> dict[str, Any]:
    """Train on `trial.device`. Initial weights and batch order come from CPU generators,
    so a seed trains on the same batches from the same weights on any device."""
    corpus = load_corpus(config["corpus"])
    torch.manual_seed(trial.seed)
    model = build_model(config, corpus.vocab_size).to(trial.device)
    block, batch = model.cfg.block_size, config["batch_size"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    eval_x, eval_y = eval_windows(corpus.val.to(trial.device), block, config["eval_windows"])
    targets = eval_y.reshape(-1)
    steps, every = config["steps"], config["eval_every"]
    order = torch.Generator().manual_seed(trial.seed)
    train = batches(corpus.train.to(trial.device), block, batch, steps, order)
    started = time.perf_counter()
    for step, (x, y) in enumerate(train):
        loss = model.loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % every == 0 or step == steps - 1:
            val_loss = nll(predict(model, eval_x), targets)
            trial.report(step=step, train_loss=loss, val_loss=val_loss)  # tensors: one transfer
    train_time = time.perf_counter() - started
    probs = predict(model, eval_x)
    trial.save_artifact("probs.npy", probs.cpu().numpy().astype(np.float32))
    trial.save_artifact("targets.npy", targets.cpu().numpy().astype(np.int32))
    trial.save_artifact("model.pt", model.checkpoint())
    return {
        "val_loss": nll(probs, targets).item(),
        "train_time_s": train_time,
        "tokens_per_s": steps * batch * block / train_time,
        "eval_positions": len(targets),
        "eval_inputs_sha1": hashlib.sha1(eval_x.cpu().numpy().tobytes()).hexdigest(),
    }


# After the sweep, the runner calls this with the sweep folder.
train_lm.after_sweep = write_pairs
# What `sweep report` adds for this family: metric directions, criteria, the PD section.
train_lm.report = REPORT
train_lm.report_sections = [report_section]


def load_model(sweep_dir: str | Path, trial_id: str) -> CharLM:
    """The trained model of one trial of a reproducibility sweep, ready for eval."""
    path = Path(sweep_dir) / "artifacts" / trial_id / "model.pt"
    return CharLM.read(path)
