"""The GPU suite: every shipped quick spec through the CLI with several trials sharing one
GPU; tri-decoding on the GPU gives the target's own greedy output; the reproducibility LM
trained on the CPU and on the GPU follows the same loss curves (train and validation, every
10th step), and so do fused seeds and the same seeds trained alone.

    python -m pytest -m gpu     # on a machine with a CUDA GPU and the CUDA build of torch

Without CUDA every test here is skipped, with that reason. The CPU-side check that
experiments keep their tensors on `trial.device` is tests/test_devices.py (runs everywhere).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, overlapping, run_directly, run_together, sweep
from test_speculative import PROMPT, decoder, family

from experiments.lm.speculative import Counters, Scorer, generate
from experiments.reproducibility import train_lm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="no CUDA device here: the GPU suite runs on a GPU machine (python -m pytest -m gpu)",
    ),
]

SPECS = REPO / "experiments" / "sweeps"
# In the order they can run: the LM sizes first, since two sweeps read their models.
QUICK = ["lm-sizes-quick", "tridecoding-quick", "lmeval-quick", "quickstart",
         "unlearning-quick", "regression"]  # fmt: skip
GPU_PER_TRIAL = 0.0625  # up to 16 trials share the GPU, one CPU each


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each quick spec run once by `sweep run`, with a fraction of the GPU per trial:
    spec -> (the finished process, the sweep's folder, its trials table)."""
    storage = tmp_path_factory.mktemp("gpu") / "results"
    models = ["--set", f"inputs.models={storage / 'lm-sizes-quick'}"]
    done: dict[str, Any] = {"storage": storage}
    for name in QUICK:
        spec = SPECS / f"{name}.yaml"
        out = sweep(
            "run", str(spec), "--quiet",
            "--set", f"storage={storage}",
            "--set", f"resources.gpu={GPU_PER_TRIAL}",
            *(models if "inputs" in yaml.safe_load(spec.read_text()) else []),
            cwd=storage.parent, timeout=300,
        )  # fmt: skip
        folder = storage / yaml.safe_load(spec.read_text())["name"]
        ran = (folder / "trials").is_dir()  # a sweep that could not start has no table
        done[name] = (out, folder, pd.read_parquet(folder / "trials") if ran else None)
    return done


@pytest.mark.parametrize("name", QUICK)
def test_every_quick_spec_runs_on_a_shared_gpu(name: str, runs):
    out, _, trials = runs[name]
    assert out.returncode == 0, out.stderr[-3000:]
    assert (trials["status"] == "ok").all(), trials["error"].dropna().tolist()[:1]
    assert (trials["device"] == "cuda").all()
    for column in ("gpu_name", "gpu_memory_total", "cuda_version", "gpu_driver"):
        assert trials[column].notna().all(), column
    peak, reserved, total = (trials[f"gpu_memory_{c}"] for c in ("peak", "reserved", "total"))
    assert ((peak > 0) & (peak <= reserved) & (reserved < total)).all()
    if "matches_target" in trials:  # greedy tri-decoding: the target's own output
        assert (trials["matches_target"] == 1.0).all()
    if len(trials) > 1:
        together = [(a, b) for a, b in overlapping(trials) if a.gpu_ids == b.gpu_ids]
        assert together, "no two trials held the GPU at the same time"


def test_status_shows_the_gpu_memory_of_a_gpu_sweep(runs):
    _, folder, trials = runs["quickstart"]
    out = sweep("status", str(folder), cwd=folder.parent)
    assert out.returncode == 0, out.stderr
    assert "GPU memory per trial attempt" in out.stdout
    assert f"{trials['gpu_name'].iloc[0]} (" in out.stdout
    assert "trials like the largest fit in one GPU's memory" in out.stdout


def test_greedy_tri_decoding_on_the_gpu_is_the_targets_own_output():
    models = [m.to("cuda") for m in family()]
    plain = generate(Scorer("plain", models[0], Counters(), cache=False), None, PROMPT, 40)
    cells = [("two_level", 0.0, 0.0), ("tri", 0.0, 0.0), ("tri", 0.4, 0.5), ("tri", 0.8, 0.95)]
    for kind, small, large in cells:
        target, proposer, counters = decoder(models, kind, small, large)
        assert generate(target, proposer, PROMPT, 40) == plain, (kind, small, large)
        assert counters.accepted["draft"] > 0 and counters.calls["target"] < 40  # speculated
        assert kind == "two_level" or counters.accepted["little"] > 0


def test_the_lm_trained_on_cpu_and_on_gpu_reaches_the_same_validation_loss():
    """Same seed: the same initial weights and batches on both devices (CPU generators), so
    the first reported losses agree to float rounding (1e-4); over 100 steps of AdamW,
    where the devices' kernels round differently all along, every 10th step's train_loss
    and val_loss within 0.01 nats, half the spread between seeds (the standard deviation
    of val_loss over 5 seeds in the README's activations-full table is about 0.02)."""
    config = {"activation": "gelu", "steps": 100, "eval_every": 10, "batch_size": 32,
              "block_size": 64, "n_layer": 2, "n_head": 2, "n_embd": 64, "seed": 3}  # fmt: skip
    cpu, cpu_steps, _ = run_directly(train_lm, config, "cpu")
    gpu, gpu_steps, _ = run_directly(train_lm, config, "cuda")
    assert_same_curves(gpu_steps, cpu_steps, within=0.01)
    assert abs(gpu["val_loss"] - cpu["val_loss"]) < 0.01
    assert gpu["eval_inputs_sha1"] == cpu["eval_inputs_sha1"]


def test_fused_seeds_on_the_gpu_train_as_their_solo_trials():
    """A bundle's fused members (experiments/stacked.py, batched kernels) against each seed
    trained alone on the same GPU, over the whole curve as CPU against GPU above: only
    the kernels differ (vmapped against plain), so the members drift apart by no more
    than rounding that AdamW carries on, while a member trained on another's batches or
    weights, or coupled to them, differs by the spread between seeds and lands outside."""
    config = {"activation": "smelu", "beta": 0.5, "steps": 100, "eval_every": 10,
              "batch_size": 32, "block_size": 64, "n_layer": 2, "n_embd": 64}  # fmt: skip
    configs = [{**config, "seed": seed} for seed in range(4)]
    together = run_together(train_lm, configs, "cuda")
    for config, (final, steps, _) in zip(configs, together, strict=True):
        alone, alone_steps, _ = run_directly(train_lm, config, "cuda")
        assert_same_curves(steps, alone_steps, within=0.01)
        assert abs(final["val_loss"] - alone["val_loss"]) < 0.01


def assert_same_curves(got: list[dict], expected: list[dict], within: float) -> None:
    """The same reported steps; the first one's losses equal to float rounding (rel 1e-4),
    every later step's train_loss and val_loss within `within` nats."""
    assert [s["step"] for s in got] == [s["step"] for s in expected]
    for loss in ("train_loss", "val_loss"):
        assert got[0][loss] == pytest.approx(expected[0][loss], rel=1e-4), loss
        for mine, theirs in zip(got, expected, strict=True):
            assert abs(mine[loss] - theirs[loss]) < within, (loss, mine["step"])
