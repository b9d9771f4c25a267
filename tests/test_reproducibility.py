"""The reproducibility family: SmeLU, the LM, identical evaluation inputs, and the
prediction-difference metrics on cases with known answers. The sweep at the end
runs on a real local Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_directly, run_together

from analysis.reproducibility import prediction_difference, summary
from experiments.lm.activations import SmeLU, make_activation
from experiments.lm.data import batches, eval_windows, load_corpus
from experiments.reproducibility import ReproducibilityParams, build_model, load_model, train_lm
from orchestrator import InputError, reporting, run_sweep
from orchestrator.params import effective

TINY = {"steps": 6, "eval_every": 3, "batch_size": 4, "block_size": 16, "n_layer": 1,
        "n_head": 2, "n_embd": 16, "eval_windows": 4}  # fmt: skip


def smelu_formula(x: float, beta: float) -> float:
    if x <= -beta:
        return 0.0
    if x >= beta:
        return x
    return (x + beta) ** 2 / (4 * beta)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_smelu_matches_its_formula_and_has_a_continuous_gradient(beta: float):
    xs = torch.linspace(-3, 3, 601, dtype=torch.float64, requires_grad=True)
    ys = SmeLU(beta)(xs)
    expected = torch.tensor([smelu_formula(x, beta) for x in xs.tolist()], dtype=torch.float64)
    assert torch.allclose(ys, expected)
    (grad,) = torch.autograd.grad(ys.sum(), xs)
    analytic = torch.clamp((xs + beta) / (2 * beta), 0, 1)
    assert torch.allclose(grad, analytic)
    for edge in (-beta, beta):  # no jump in the gradient at the joins
        x = torch.tensor([edge - 1e-6, edge + 1e-6], dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(SmeLU(beta)(x).sum(), x)
        assert abs(g[0] - g[1]) < 1e-5
    assert torch.autograd.gradcheck(SmeLU(beta), (xs[::50].detach().clone().requires_grad_(),))


def test_the_activation_really_changes_the_network():
    corpus_vocab, x = 20, torch.randint(0, 20, (2, 16), generator=torch.Generator().manual_seed(1))
    outputs = {}
    for name, beta in [
        ("relu", 1.0),
        ("gelu", 1.0),
        ("swish", 1.0),
        ("smelu", 0.5),
        ("smelu", 1.0),
    ]:
        torch.manual_seed(0)  # same initial weights for every activation
        model = build_model({**TINY, "activation": name, "beta": beta}, corpus_vocab)
        assert type(model.blocks[0].mlp[1]) is type(make_activation(name, beta))
        outputs[(name, beta)] = model(x)
    keys = list(outputs)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert not torch.allclose(outputs[a], outputs[b]), f"{a} and {b} give the same output"


def test_evaluation_windows_do_not_depend_on_the_seed():
    corpus = load_corpus()
    torch.manual_seed(123)
    x1, y1 = eval_windows(corpus.val, 16, 8)
    torch.manual_seed(456)
    x2, y2 = eval_windows(corpus.val, 16, 8)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(x1[:, 1:], y1[:, :-1])  # targets are the next characters


def test_same_seed_same_curve_different_seed_different_predictions():
    a, curve_a, art_a = run_directly(train_lm, {**TINY, "activation": "gelu", "seed": 3})
    b, curve_b, art_b = run_directly(train_lm, {**TINY, "activation": "gelu", "seed": 3})
    c, _, art_c = run_directly(train_lm, {**TINY, "activation": "gelu", "seed": 4})
    assert curve_a == curve_b and a["val_loss"] == b["val_loss"]
    assert a["eval_inputs_sha1"] == c["eval_inputs_sha1"]  # same positions for every trial
    assert np.array_equal(art_a["targets.npy"], art_c["targets.npy"])
    self_pd = prediction_difference(art_a["probs.npy"], art_b["probs.npy"], art_a["targets.npy"])
    assert self_pd == {"pd": 0.0, "relative_pd": 0.0, "top1_mismatch_pct": 0.0, "n_positions": 64}
    other = prediction_difference(art_a["probs.npy"], art_c["probs.npy"], art_a["targets.npy"])
    assert other["pd"] > 0 and other["relative_pd"] > 0


def _plain_training(config: dict, steps: int) -> list[float]:
    """The LM trained as a lone nn.Module in the plainest PyTorch: its training losses."""
    corpus = load_corpus()
    torch.manual_seed(config["seed"])
    model = build_model(config, corpus.vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    order = torch.Generator().manual_seed(config["seed"])
    losses = []
    for x, y in batches(corpus.train, config["block_size"], config["batch_size"], steps, order):
        loss = model.loss(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_the_stacked_training_of_one_model_is_plain_training():
    """train_lm trains through experiments/stacked.py (vmap over stacked weights) even alone;
    it must give the loss curve of the same model trained as a plain module."""
    config = {**TINY, "activation": "smelu", "beta": 0.5, "seed": 5, "steps": 8, "eval_every": 1}
    _, curve, _ = run_directly(train_lm, config)
    expected = _plain_training(effective(ReproducibilityParams, config), steps=8)
    assert [step["train_loss"] for step in curve] == pytest.approx(expected, rel=1e-5)


def test_fused_seeds_train_as_their_solo_trials_and_give_the_same_pairs():
    """4 seeds trained at once (a bundle's fused members) against each trained alone:
    loss curves, final metrics and predictions within rtol 1e-4 (CPU, float32), and so the
    prediction differences between pairs of seeds."""
    config = {**TINY, "activation": "gelu", "steps": 40, "eval_every": 10}
    seeds = [0, 1, 2, 3]
    alone = [run_directly(train_lm, {**config, "seed": seed}) for seed in seeds]
    together = run_together(train_lm, [{**config, "seed": seed} for seed in seeds])
    for (final, curve, art), (f_final, f_curve, f_art) in zip(alone, together, strict=True):
        assert [s["step"] for s in curve] == [s["step"] for s in f_curve]
        for name in ("train_loss", "val_loss"):
            got = [s[name] for s in f_curve]
            assert got == pytest.approx([s[name] for s in curve], rel=1e-4)
        assert f_final["val_loss"] == pytest.approx(final["val_loss"], rel=1e-4)
        assert f_final["eval_inputs_sha1"] == final["eval_inputs_sha1"]
        assert np.allclose(f_art["probs.npy"], art["probs.npy"], rtol=1e-4, atol=1e-7)
    labels = alone[0][2]["targets.npy"]
    for a in range(4):
        for b in range(a + 1, 4):
            solo = prediction_difference(alone[a][2]["probs.npy"], alone[b][2]["probs.npy"], labels)
            fused = prediction_difference(
                together[a][2]["probs.npy"], together[b][2]["probs.npy"], labels
            )
            assert fused == pytest.approx(solo, rel=1e-4)
    assert alone[0][0]["val_loss"] != alone[1][0]["val_loss"]  # the seeds did differ


def test_fused_training_gets_members_that_differ_in_the_seed_only(tmp_path):
    """`varies=["seed"]`: bundles that would mix activations are refused before anything
    runs, so train_lms never sees them."""
    spec = {"name": "q", "experiment": "reproducibility", "seeds": 2, "params": TINY,
            "grid": {"activation": ["relu", "gelu"]}, "bundle": {"size": 4, "by": "*"},
            "storage": str(tmp_path)}  # fmt: skip
    with pytest.raises(InputError, match=r"may differ only in seed; .* differ in activation"):
        run_sweep(spec, progress=None)
    assert not (tmp_path / "q").exists()


def test_prediction_difference_on_hand_computed_cases():
    labels = np.array([0, 1])
    p_a = np.array([[1.0, 0.0], [0.5, 0.5]])
    p_b = np.array([[0.0, 1.0], [0.5, 0.5]])
    got = prediction_difference(p_a, p_b, labels)
    # position 0: TV 1, relative |1 - 0| / 0.5 = 2, argmax differs; position 1: all 0
    assert got == {"pd": 0.5, "relative_pd": 1.0, "top1_mismatch_pct": 50.0, "n_positions": 2}
    p_c = np.array([[0.6, 0.4], [0.2, 0.8]])
    p_d = np.array([[0.8, 0.2], [0.4, 0.6]])
    got = prediction_difference(p_c, p_d, labels)
    assert got["pd"] == pytest.approx(0.2)  # each row moves 0.2 of mass
    assert got["relative_pd"] == pytest.approx((0.2 / 0.7 + 0.2 / 0.7) / 2)
    assert got["top1_mismatch_pct"] == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        prediction_difference(p_a, p_b[:1], labels)


def test_a_model_whose_loss_went_nan_is_marked_diverged():
    trained, _, _ = run_directly(train_lm, {**TINY, "activation": "relu", "seed": 0})
    blown, _, _ = run_directly(train_lm, {**TINY, "activation": "relu", "seed": 0, "lr": 1e4})
    assert np.isfinite(trained["val_loss"]) and trained["diverged"] == 0
    assert np.isnan(blown["val_loss"]) and blown["diverged"] == 1


@pytest.mark.usefixtures("ray_instance")
def test_a_sweep_writes_pairs_and_reloadable_checkpoints(tmp_path: Path):
    spec = {
        "name": "repro",
        "experiment": "reproducibility",
        "grid": {"act": [{"activation": "relu"}, {"activation": "smelu", "beta": 0.5}]},
        "seeds": 3,
        "params": TINY,
        "storage": str(tmp_path),
    }
    result = run_sweep(spec, progress=None)
    assert result.count("ok") == 6 and result.after_sweep.endswith("pairs.parquet")
    pairs = pd.read_parquet(tmp_path / "repro" / "pairs")
    assert len(pairs) == 2 * 3  # 3 pairs of seeds per activation
    assert sorted(pairs.groupby("activation", dropna=False).size()) == [3, 3]
    assert (pairs["pd"] > 0).all() and (pairs["top1_mismatch_pct"] >= 0).all()
    assert pairs.loc[pairs["activation"] == "relu", "beta"].isna().all()

    # the same sweep with each activation's 3 seeds fused in one bundle: same trials, and
    # pairs within the tolerance of float32 sums taken in another order
    fused = run_sweep(
        {**spec, "storage": str(tmp_path / "fused"), "bundle": {"size": 3}}, progress=None
    )
    assert fused.count("ok") == 6
    bundles = pd.read_parquet(tmp_path / "fused" / "repro" / "trials")
    assert bundles["bundle"].nunique() == 2
    # trained through train_lm.fused, all at once: one training loop, timed once, per bundle
    # (members run one by one would each time their own)
    assert bundles.groupby("bundle")["train_time_s"].nunique().eq(1).all()
    # each member is charged its share of the bundle's time, and its tokens over that share
    tokens = TINY["steps"] * TINY["batch_size"] * TINY["block_size"]
    assert np.allclose(bundles["tokens_per_s"] * bundles["train_time_s"], tokens)
    assert (bundles["train_time_s"] * 3 < bundles["duration_s"]).all()
    assert pd.read_parquet(tmp_path / "repro" / "trials")["train_time_s"].nunique() == 6
    both = pairs.merge(
        pd.read_parquet(tmp_path / "fused" / "repro" / "pairs"), on=["trial_a", "trial_b"]
    )
    assert len(both) == 6
    for metric in ("pd", "relative_pd"):
        assert np.allclose(both[f"{metric}_x"], both[f"{metric}_y"], rtol=1e-4, atol=0)

    table = summary(tmp_path / "repro").set_index(["activation", "metric"])
    assert table.loc[("relu", "pd"), "n"] == 3 and table.loc[("smelu", "val_loss"), "n"] == 3
    assert table.loc[("relu", "pd"), "mean"] == pytest.approx(
        pairs.loc[pairs["activation"] == "relu", "pd"].mean()
    )

    trials = pd.read_parquet(tmp_path / "repro" / "trials")
    assert trials["eval_inputs_sha1"].nunique() == 1
    meta = json.loads((tmp_path / "repro" / "sweep.json").read_text())
    columns = meta["config_columns"]  # the spec's keys, then the defaults filled in, then seed
    assert columns[-1] == "seed" and set(columns) == {*ReproducibilityParams.model_fields, "seed"}
    assert columns.index("beta") < columns.index("size")  # beta: set by the grid
    row = trials.iloc[0]
    model = load_model(tmp_path / "repro", row["trial_id"])
    assert model.cfg.activation == row["activation"]
    x, y = eval_windows(load_corpus().val, TINY["block_size"], TINY["eval_windows"])
    with torch.no_grad():
        probs = torch.softmax(model(x), -1).reshape(-1, model.cfg.vocab_size).numpy()
    saved = np.load(tmp_path / "repro" / "artifacts" / row["trial_id"] / "probs.npy")
    assert np.allclose(probs, saved, atol=1e-6)  # the checkpoint is the model that predicted

    # the family's report: its defaults (directions, criteria) and its own section
    md = (reporting.report(tmp_path / "repro", None, quiet=True) / "report.md").read_text()
    assert "## Prediction difference between seeds (Shamir et al. 2020)" in md
    assert "scored on the same positions (1 distinct input set(s) over 6 trials)" in md
    assert (
        "- **Ranking, research** (an order of means, not a test): 1." in md
        and "- **Most reproducible**: **" in md
    )
    assert "**val_loss** (lower is better)" in md and "**pd** (lower is better, over pairs" in md
