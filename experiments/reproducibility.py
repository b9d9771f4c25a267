"""Reproducibility vs activation (SCIENCE.md section 1, seed notebook 002).

Each trial trains the character LM with one activation and one seed (the seed
sets the initial weights and the batch order), then saves its predicted
distributions on a fixed set of validation positions that every trial shares.
After the sweep, `analysis.reproducibility` compares every pair of seeds of the
same config on those positions and writes `pairs/`.

Config: activation (relu|gelu|swish|smelu), beta (smelu), corpus ("pydoc" or a
text file), steps, batch_size, block_size, n_layer, n_head, n_embd, lr,
eval_every, eval_windows.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.reproducibility import REPORT, report_section, write_pairs
from experiments.lm.data import DEFAULT_CORPUS, batches, eval_windows, load_corpus
from experiments.lm.model import CharLM, ModelConfig


def build_model(config: dict[str, Any], vocab_size: int) -> CharLM:
    return CharLM(
        ModelConfig(
            vocab_size=vocab_size,
            block_size=config.get("block_size", 64),
            n_layer=config.get("n_layer", 2),
            n_head=config.get("n_head", 2),
            n_embd=config.get("n_embd", 64),
            activation=config["activation"],
            beta=config.get("beta", 1.0),
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


def train_lm(config: dict[str, Any], trial: Any) -> dict[str, Any]:
    """Train on `trial.device`. Initial weights and batch order come from CPU generators,
    so a seed trains on the same batches from the same weights on any device."""
    corpus = load_corpus(config.get("corpus", DEFAULT_CORPUS))
    torch.manual_seed(trial.seed)
    model = build_model(config, corpus.vocab_size).to(trial.device)
    block, batch = model.cfg.block_size, config.get("batch_size", 32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.get("lr", 3e-3))
    eval_x, eval_y = eval_windows(
        corpus.val.to(trial.device), block, config.get("eval_windows", 32)
    )
    targets = eval_y.reshape(-1)
    steps, every = config.get("steps", 300), config.get("eval_every", 50)
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
