"""The unlearning family: targets (the zero-gradient and argmax traps of SCIENCE.md
section 3), the data (IDX files, forget splits), and a real sweep on a local Ray whose
report compares soft and hard targets against the retrained reference."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import cli, run_directly, run_together

from analysis.unlearning import soft_vs_hard, targets_label
from experiments.stacked import Stack
from experiments.unlearning import make_targets, soft_cross_entropy, unlearn
from experiments.vision.data import load_images, read_idx, split
from experiments.vision.models import accuracy, mlp
from orchestrator import InputError, run_sweep


def test_hard_targets_are_one_hot_and_soft_targets_stay_distributions():
    y, logits = torch.tensor([2, 0]), torch.tensor([[1.0, 2.0, 4.0], [3.0, 0.0, 0.0]])
    assert torch.equal(make_targets("hard", y, logits), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    soft = make_targets("soft", y, logits, temperature=2.0)
    assert torch.allclose(soft, torch.softmax(logits / 2, dim=1))
    assert torch.allclose(soft.sum(dim=1), torch.ones(2)) and (soft.max(dim=1).values < 1).all()
    smooth = make_targets("smooth", y, logits, smoothing=0.3)
    assert torch.allclose(smooth[0], torch.tensor([0.1, 0.1, 0.8]))


def test_soft_targets_at_temperature_one_give_exactly_zero_gradient_and_are_refused():
    """The trap: targets equal to the model's own predictions make sum_c p_c grad log p_c = 0."""
    torch.manual_seed(0)
    model, x = mlp(4, 3, width=8), torch.randn(16, 4)
    own = torch.softmax(model(x).detach(), dim=1)  # what T = 1 would give
    soft_cross_entropy(model(x), own).backward()
    assert max(p.grad.abs().max().item() for p in model.parameters()) < 1e-6
    model.zero_grad()
    targets = make_targets("soft", torch.zeros(16, dtype=torch.long), model(x), temperature=2.0)
    soft_cross_entropy(model(x), targets).backward()
    assert max(p.grad.abs().max().item() for p in model.parameters()) > 1e-3
    with pytest.raises(ValueError, match="exactly zero"):
        make_targets("soft", torch.zeros(16, dtype=torch.long), model(x), temperature=1.0)


def test_soft_vs_hard_pairs_runs_by_seed_and_labels_hard_whatever_the_params():
    seeds = np.arange(6)
    hard = pd.DataFrame({"seed": seeds, "targets": "hard", "temperature": 2.0,
                         "forget_acc": 0.1 * seeds})  # fmt: skip
    soft = hard.assign(targets="soft", forget_acc=0.1 * seeds + 0.5 + 0.01 * (seeds % 2))
    trials = pd.concat([hard, soft], ignore_index=True)
    trials["label"] = trials.apply(targets_label, axis=1)
    assert sorted(trials["label"].unique()) == ["hard", "soft T=2"]
    table = soft_vs_hard(trials, [], ["forget_acc"])
    (row,) = table.to_dict("records")
    assert row["test"] == "paired t" and row["n"] == "6 pairs"
    assert row["diff"] == pytest.approx(0.505) and row["p (Holm)"] < 1e-6


def test_accuracy_of_a_model_with_known_predictions():
    always_one = torch.nn.Linear(2, 3)
    with torch.no_grad():
        always_one.weight.zero_()
        always_one.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    y = torch.tensor([1, 1, 0, 2])
    models = Stack([always_one, always_one])  # one value per member
    assert accuracy(models, torch.zeros(4, 2), y).tolist() == [0.5, 0.5]
    assert np.isnan(accuracy(models, torch.zeros(0, 2), y[:0])).all()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = (
        b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(struct.pack(">i", n) for n in array.shape)
    )
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


def test_mnist_is_read_from_a_local_folder_of_idx_files(tmp_path: Path):
    pixels = np.arange(5 * 28 * 28).reshape(5, 28, 28) % 256
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", pixels, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([7, 0, 1, 7, 3]))
    assert np.array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), pixels)
    images = load_images(str(tmp_path))
    assert images.x.shape == (5, 1, 28, 28) and images.y.tolist() == [7, 0, 1, 7, 3]
    assert images.x.max().item() == 1.0 and images.x[0, 0, 0, 1].item() == pytest.approx(1 / 255)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">i", 2))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="not a folder of MNIST"):
        load_images(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte"):
        load_images(str(tmp_path / "empty"))


def test_forget_sets_are_one_class_or_a_fraction_and_depend_on_the_data_seed_only():
    digits = load_images()
    assert len(digits) == 1797 and digits.x.shape[1:] == (1, 8, 8)
    by_class = split(digits, forget_class=3)
    assert set(by_class.forget.y.tolist()) == {3} and 3 not in by_class.retain.y.tolist()
    assert len(by_class.forget) + len(by_class.retain) + len(by_class.test) == 1797
    fraction = split(digits, forget_fraction=0.1)
    assert len(fraction.forget) == int(0.1 * (len(fraction.forget) + len(fraction.retain)))
    assert torch.equal(split(digits, forget_fraction=0.1).forget.x, fraction.forget.x)
    assert not torch.equal(
        split(digits, forget_fraction=0.1, data_seed=1).forget.x, fraction.forget.x
    )
    with pytest.raises(ValueError, match="exactly one"):
        split(digits)
    with pytest.raises(ValueError, match="no such class"):
        split(digits, forget_class=11)


SMALL = {"arch": "mlp", "width": 32, "forget_class": 3, "epochs": 3, "unlearn_lr": 0.01,
         "unlearn_steps": 30, "eval_every": 4}  # fmt: skip


@pytest.mark.parametrize(
    "method",
    [
        {"algorithm": "gradasc", "targets": "soft", "unlearn_lr": 0.05, "stop_at_forget_acc": 0.5},
        {"algorithm": "graddiff", "targets": "smooth"},
        {"algorithm": "retrain"},
        {"algorithm": "gradasc", "arch": "cnn", "channels": 4, "epochs": 1, "unlearn_steps": 8},
    ],
)
def test_fused_seeds_train_and_unlearn_as_their_solo_trials(method: dict):
    """3 seeds at once against each alone: the reported curves and final metrics within
    rtol 1e-4 (CPU, float32), members stopping early at their own steps."""
    configs = [{**SMALL, **method, "seed": seed} for seed in (0, 1, 2)]
    alone = [run_directly(unlearn, config) for config in configs]
    together = run_together(unlearn, configs)
    for (final, curve, _), (f_final, f_curve, _) in zip(alone, together, strict=True):
        assert [s["step"] for s in f_curve] == [s["step"] for s in curve]
        for got, expected in zip(f_curve, curve, strict=True):
            assert got == pytest.approx(expected, rel=1e-4, nan_ok=True)
        timing = ("unlearn_time_s", "train_time_s")
        assert {k: v for k, v in f_final.items() if k not in timing} == pytest.approx(
            {k: v for k, v in final.items() if k not in timing}, rel=1e-4, nan_ok=True
        )
    if "stop_at_forget_acc" in method:
        taken = [final["steps_taken"] for final, _, _ in alone]
        assert len(set(taken)) > 1 and min(taken) < SMALL["unlearn_steps"]  # stopped apart


def test_fused_seeds_are_members_that_differ_in_the_seed_only(tmp_path: Path):
    """`varies=["seed"]`: bundles that would mix depths are refused before anything runs,
    so unlearn_many never sees them."""
    spec = {"name": "q", "experiment": "unlearning", "seeds": 2, "params": SMALL,
            "grid": {"depth": [1, 2]}, "bundle": {"size": 4, "by": "*"},
            "storage": str(tmp_path)}  # fmt: skip
    with pytest.raises(InputError, match=r"may differ only in seed; .* differ in depth"):
        run_sweep(spec, progress=None)
    assert not (tmp_path / "q").exists()


@pytest.fixture(scope="module")
def sweep(ray_instance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    storage = tmp_path_factory.mktemp("unlearning")
    spec = {
        "name": "unlearn",
        "experiment": "unlearning",
        "grid": {
            "method": [
                {"algorithm": "gradasc", "targets": "hard"},
                {"algorithm": "gradasc", "targets": "soft", "temperature": 2.0},
                {"algorithm": "gradasc", "targets": "soft", "temperature": 1.0},  # refused
                {"algorithm": "retrain"},
            ]
        },
        "seeds": 2,
        "params": {"arch": "mlp", "width": 32, "forget_class": 3, "epochs": 8,
                   "unlearn_lr": 0.005, "unlearn_steps": 60, "stop_at_forget_acc": 0.2},
        "storage": str(storage),
        "bundle": {"size": 2},  # each method's two seeds trained and unlearned fused
    }  # fmt: skip
    result = run_sweep(spec, progress=None)
    assert result.count("ok") == 6 and result.count("failed") == 2
    return Path(result.path)


def test_a_sweep_records_before_and_after_and_the_reference(sweep: Path):
    trials = pd.read_parquet(sweep / "trials")
    refused = trials[trials["status"] == "failed"]
    assert (
        refused["error"].str.contains("exactly zero").all() and (refused["temperature"] == 1).all()
    )
    ok = trials[trials["status"] == "ok"]
    assert (ok["forget_acc_before"] > 0.8).all() and (ok["test_acc_before"] > 0.8).all()
    hard = ok[ok["targets"] == "hard"]
    assert (hard["forget_acc"] <= 0.2).all() and (hard["steps_taken"] < 60).all()  # stopped
    retrained = ok[ok["algorithm"] == "retrain"]
    assert (retrained["test_forget_class_acc"] <= 0.05).all()  # never saw a 3
    assert (retrained["steps_taken"] == 0).all()
    theta_0 = ok["param_change"] / ok["param_change_rel"]  # ||theta_0||
    assert np.allclose(theta_0.groupby(ok["seed"]).std(), 0, atol=1e-4)  # one original per seed


def test_the_report_shows_soft_vs_hard_distributions_and_tests(sweep: Path):
    done = cli("report", str(sweep), cwd=sweep.parent)
    assert done.returncode == 0, done.stderr
    md = (sweep / "report" / "report.md").read_text()
    assert "## Unlearning: soft vs hard targets" in md
    for metric in ("forget_acc", "test_acc", "param_change", "param_change_rel"):
        assert (sweep / "report" / f"unlearning-{metric}.png").is_file()
    assert "| forget_acc | all | soft T=2 | paired t | 2 pairs |" in md
    assert "Reference: models retrained" in md
