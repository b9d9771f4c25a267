"""LM evaluation: the metric functions on cases with known answers (a model that prefers
the correct item scores 100%, a uniform model 50%, a linear loss curve gives its slope),
scoring in windows, test-time training on text it can only learn by reading, and real
sweeps on a local Ray: baseline and TTT evaluations of trained LMs, and `sweep compare`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import cli

from analysis.lmeval import ttt_vs_baseline
from experiments.lm import pairs
from experiments.lm.metrics import pair_accuracy, slope, slope_interval, wilson_interval
from experiments.lm.model import CharLM, ModelConfig
from experiments.lm.pairs import Pair
from experiments.lm.scoring import Adapter, document_losses, score_pairs, token_logprobs
from orchestrator import run_sweep

TEXT = (
    "The parser reads the whole file.  It then builds a tree of nodes.  Each node "
    "holds its children in order.  The compiler walks the tree once.  Names are "
    "resolved in the enclosing scope.  A missing name raises an error at run time.  "
) * 3
VOCAB = "".join(sorted(set(TEXT + "abcdefghijklmnopqrstuvwxyz")))


def encode(text: str) -> torch.Tensor:
    return torch.tensor([VOCAB.index(c) for c in text])


def tiny_model(block: int = 16, seed: int = 0) -> CharLM:
    torch.manual_seed(seed)
    return CharLM(ModelConfig(len(VOCAB), block, n_layer=1, n_head=2, n_embd=16)).eval()


class AvoidsQ(torch.nn.Module):
    """A model that thinks 'q' nearly impossible and everything else equally likely."""

    def __init__(self, block: int = 16) -> None:
        super().__init__()
        self.cfg = ModelConfig(len(VOCAB), block)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*idx.shape, len(VOCAB))
        logits[..., VOCAB.index("q")] = -20.0
        return logits


def test_pair_accuracy_counts_ties_as_half_and_has_a_wilson_interval():
    assert pair_accuracy(np.array([-1.0, -2.0]), np.array([-3.0, -4.0])) == 1.0
    assert pair_accuracy(np.array([-1.0, -5.0]), np.array([-3.0, -4.0])) == 0.5
    assert pair_accuracy(np.full(7, -2.0), np.full(7, -2.0)) == 0.5  # cannot tell: chance
    low, high = wilson_interval(0.5, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(1.0, 50)[1] == pytest.approx(1.0) and wilson_interval(1.0, 50)[0] < 0.95
    with pytest.raises(ValueError):
        pair_accuracy(np.array([]), np.array([]))


def test_a_linear_loss_curve_gives_its_slope_with_an_interval_around_it():
    positions = np.arange(0, 2048, 64) + 32.0
    curve = 2.0 - 0.25 * positions / 1000  # falls 0.25 nats per 1,000 positions
    assert slope(positions, curve) == pytest.approx(-0.25)
    same = np.tile(curve, (6, 1))
    assert slope_interval(positions, same) == pytest.approx((-0.25, -0.25, -0.25))
    noisy = same + np.random.default_rng(0).normal(0, 0.05, same.shape)
    fitted, low, high = slope_interval(positions, noisy)
    assert low < -0.25 < high and low < fitted < high and high - low < 0.1


def test_a_model_that_prefers_the_correct_item_scores_100_and_a_uniform_one_50():
    items = [Pair("The tree ", "holds ", "hqlds "), Pair("A name ", "raises", "rqises")] * 5
    prefers = score_pairs(AvoidsQ(), items, encode)
    assert pair_accuracy(prefers["correct"], prefers["distractor"]) == 1.0
    model, pair = tiny_model(block=32), Pair("The tree ", "holds", "hqlds")
    scores = score_pairs(model, [pair], encode)
    ids = encode(pair.context + pair.correct)
    with torch.no_grad():  # log P of each continuation character given all before it
        logp = F.log_softmax(model(ids[None, :-1])[0], -1).gather(1, ids[1:, None])[:, 0]
    assert scores["correct"][0] == pytest.approx(
        logp[len(pair.context) - 1 :].sum().item(), abs=1e-5
    )
    assert scores["correct_norm"][0] == pytest.approx(
        logp[len(pair.context) - 1 :].mean().item(), abs=1e-5
    )
    uniform = tiny_model()
    with torch.no_grad():
        uniform.head.weight.zero_()  # every logit 0: every character equally likely
    for task in pairs.TASKS:
        built = pairs.build(task, TEXT, 20, 16)
        assert built, task
        scores = score_pairs(uniform, built, encode)
        assert pair_accuracy(scores["correct_norm"], scores["distractor_norm"]) == 0.5
        if task != "story":  # same lengths: the summed scores tie too
            assert pair_accuracy(scores["correct"], scores["distractor"]) == 0.5


def test_pairs_are_what_they_claim():
    lexical = pairs.build("lexical", TEXT, 10, 16)
    words = set(TEXT.lower().split())
    assert all(
        p.distractor.strip() not in words and len(p.correct) == len(p.distractor) for p in lexical
    )
    syntactic = pairs.build("syntactic", TEXT, 10, 16)
    assert all(sorted(p.correct.split()) == sorted(p.distractor.split()) for p in syntactic)
    assert all(p.correct != p.distractor for p in syntactic)
    story = pairs.build("story", TEXT, 10, 16)
    assert all(TEXT.count(p.context + p.correct) >= 1 for p in story)
    assert all(p.distractor != p.correct for p in story)
    assert pairs.build("story", TEXT, 10, 16) == story  # the same items for every trial


def test_windows_give_every_position_its_own_prefix_of_at_least_half_a_block():
    model, ids = tiny_model(block=8), encode(TEXT[:40])
    logp = token_logprobs(model, ids)
    assert logp.shape == (39,)
    with torch.no_grad():
        direct = F.log_softmax(model(ids[None, :8])[0], -1).gather(1, ids[1:9, None])[:, 0]
        assert torch.allclose(logp[:8], direct, atol=1e-5)
        # windows begin at 0, 4, 8, ... (half a block apart); target t comes from the window
        # whose last 4 targets hold it: ids[s:t] with s = 4 * ceil((t - 8) / 4)
        for t in range(9, 40):
            start = 4 * -(-(t - 8) // 4)
            expected = F.log_softmax(model(ids[None, start:t])[0, -1], -1)[ids[t]]
            assert torch.isclose(logp[t - 1], expected, atol=1e-5), t


def test_ttt_learns_text_it_can_only_know_by_reading_and_lr_0_is_the_baseline():
    """A period of 24 characters, longer than the 16-character window: the baseline cannot
    copy from context, while dynamic evaluation learns the sequence as it reads it."""
    model = tiny_model(block=16)
    period = torch.randint(0, len(VOCAB), (24,), generator=torch.Generator().manual_seed(0))
    document = period.repeat(25)
    baseline = document_losses(model, [document])[0]
    assert np.allclose(document_losses(model, [document], Adapter(lr=0.0))[0], baseline)
    ttt = document_losses(model, [document], Adapter(lr=0.3, steps=3))[0]
    assert ttt[-100:].mean() < 0.1 < 2.0 < baseline[-100:].mean()
    assert np.allclose(document_losses(model, [document])[0], baseline)  # model restored


def test_ttt_never_trains_on_a_token_before_scoring_it():
    """Change one late token: with TTT, the loss at every earlier position must not move
    (an adapter that trained on a window before scoring it would move those beside it)."""
    model, adapter = tiny_model(block=16), Adapter(lr=0.5, steps=2)
    document = torch.randint(0, len(VOCAB), (200,), generator=torch.Generator().manual_seed(1))
    changed = document.clone()
    changed[150] = (changed[150] + 1) % len(VOCAB)
    before, after = (document_losses(model, [d], adapter)[0] for d in (document, changed))
    assert np.array_equal(before[:149], after[:149])  # positions 1 .. 149
    assert before[149] != after[149] and not np.allclose(before[150:], after[150:])


@pytest.fixture(scope="module")
def storage(ray_instance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seeds of a tiny trained LM (sweep `lms`)."""
    storage = tmp_path_factory.mktemp("lmeval")
    train = {"name": "lms", "experiment": "reproducibility", "seeds": 2, "storage": str(storage),
             "params": {"activation": "relu", "steps": 30, "eval_every": 30, "batch_size": 8,
                        "block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 16,
                        "eval_windows": 2}}  # fmt: skip
    assert run_sweep(train, progress=None).count("ok") == 2
    return storage


def eval_spec(storage: Path, name: str, variant: str) -> dict:
    return {
        "name": name,
        "experiment": "lmeval",
        "inputs": {"models": str(storage / "lms")},
        "seeds": 2,
        "params": {"variant": variant, "ttt_lr": 0.1, "ttt_steps": 1, "n_pairs": 12,
                   "pair_context": 16, "n_documents": 2, "document_len": 256, "loss_bin": 32},
        "storage": str(storage),
    }  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(storage: Path) -> dict[str, pd.DataFrame]:
    tables = {}
    for variant in ("baseline", "ttt"):
        result = run_sweep(eval_spec(storage, f"eval-{variant}", variant), progress=None)
        assert result.count("ok") == 2, [r["error"] for r in result.rows if r["error"]]
        tables[variant] = pd.read_parquet(Path(result.path) / "trials").sort_values("seed")
    return tables


def test_baseline_and_ttt_evaluations_land_in_the_store(storage: Path, evaluated):
    base, ttt = evaluated["baseline"], evaluated["ttt"]
    for task in pairs.TASKS:
        assert (
            (base[f"{task}_acc_low"] <= base[f"{task}_acc"])
            & (base[f"{task}_acc"] <= base[f"{task}_acc_high"])
        ).all()
        assert (base[f"{task}_pairs"] > 0).all()
    # the first window is scored before any adaptation; later ones after it
    assert np.allclose(base["early_loss"], ttt["early_loss"])
    assert not np.allclose(base["long_loss"], ttt["long_loss"])
    assert (base["n_documents"] == 2).all() and (base["eval_text_sha1"].nunique() == 1)
    steps = pd.read_parquet(storage / "eval-ttt" / "metrics")
    assert sorted(steps["step"].unique()) == [1 + 32 * i for i in range(255 // 32)]
    assert steps["position_loss"].notna().all()


def test_ttt_that_blows_the_model_up_is_marked_diverged(storage: Path, evaluated):
    spec = eval_spec(storage, "eval-blown", "ttt")
    spec["params"] = {**spec["params"], "ttt_lr": 1e6}
    result = run_sweep(spec, progress=None)
    blown = pd.read_parquet(Path(result.path) / "trials")
    assert result.count("ok") == 2 and (blown["diverged"] == 1).all()
    assert blown["long_loss"].isna().all()
    assert (evaluated["baseline"]["diverged"] == 0).all()
    assert (evaluated["ttt"]["diverged"] == 0).all()


def test_an_evaluation_without_its_models_input_is_a_clear_trial_error(storage: Path):
    spec = eval_spec(storage, "no-models", "baseline")
    del spec["inputs"]
    spec["seeds"] = 1
    result = run_sweep(spec, progress=None)
    assert result.count("failed") == 1 and "inputs: {models:" in result.rows[0]["error"]


def test_sweep_compare_shows_baseline_and_ttt_side_by_side(storage: Path, evaluated):
    out = storage / "comparison"
    done = cli("compare", str(storage / "eval-baseline"), str(storage / "eval-ttt"),
               "--out", str(out), cwd=storage)  # fmt: skip
    assert done.returncode == 0, done.stderr
    md = (out / "report.md").read_text()
    assert "## LM evaluation: minimal pairs and loss by position" in md
    assert (out / "lmeval-benchmarks.png").is_file() and (
        out / "lmeval-loss-by-position.png"
    ).is_file()
    assert "| sweep=eval-ttt variant=ttt | long_loss | 2 |" in md  # paired over two models


def test_ttt_is_paired_with_the_one_baseline_of_the_same_model():
    rows = [
        {"sweep": "b", "seed": s, "model_size": "m", "variant": None, "long_loss": 2.0 + s}
        for s in range(3)
    ] + [
        {"sweep": "t", "seed": s, "model_size": "m", "variant": "ttt", "ttt_lr": 0.1,
         "long_loss": 1.9 + s + 0.01 * s}
        for s in range(3)
    ]  # fmt: skip
    trials = pd.DataFrame(rows).assign(group=lambda f: f["sweep"])
    config = ["seed", "model_size", "variant", "ttt_lr"]
    table, note = ttt_vs_baseline(trials, config, ["long_loss"])  # a baseline without `variant`
    (row,) = table.to_dict("records")
    assert row["n models"] == 3 and row["mean diff"] == pytest.approx(-0.09) and note == ""
    twice = pd.concat([trials, trials[trials["sweep"] == "b"].assign(sweep="b2")])
    table, note = ttt_vs_baseline(twice, config, ["long_loss"])
    assert table.empty and "no single partner" in note
