"""The unlearning family: targets (the zero-gradient and argmax traps of SCIENCE.md
section 3), the data (IDX files, forget splits), and a real sweep on a local Ray whose
report compares soft and hard targets against the retrained reference."""

from __future__ import annotations

import gzip
import math
import struct
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import cli, make_sweep, run_directly, run_together

from analysis.document import Plot
from analysis.results import analyse
from analysis.settings import ReportSettings
from analysis.sweep import load
from analysis.unlearning import (
    REPORT,
    effort_summary,
    equal_effort,
    report_section,
    soft_vs_hard,
    targets_label,
)
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


def test_a_member_with_non_finite_logits_has_nan_accuracy_not_that_of_class_0():
    """argmax of NaN logits is 0: without the check, a diverged model scores as one that
    predicts class 0 everywhere (here 1/4), the other member keeps its 2/4."""
    always_one, diverged = torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)
    with torch.no_grad():
        for layer, bias in ((always_one, [0.0, 5.0, 0.0]), (diverged, [float("nan"), 0, 0])):
            layer.weight.zero_()
            layer.bias.copy_(torch.tensor(bias))
    y = torch.tensor([1, 1, 0, 2])
    got = accuracy(Stack([always_one, diverged]), torch.zeros(4, 2), y).tolist()
    assert got[0] == 0.5 and math.isnan(got[1])
    with torch.no_grad():
        diverged.bias.copy_(torch.tensor([0.0, float("inf"), 0.0]))  # inf alone is enough
    assert math.isnan(accuracy(Stack([diverged]), torch.zeros(4, 2), y).item())


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
# ascent at lr 10 sends the weights to NaN within a few steps, each seed at its own step
DIVERGING = {"algorithm": "gradasc", "targets": "soft", "unlearn_lr": 10, "stop_at_forget_acc": 0.5}


@pytest.mark.parametrize(
    "method",
    [
        {"algorithm": "gradasc", "targets": "soft", "unlearn_lr": 0.05, "stop_at_forget_acc": 0.5},
        {"algorithm": "graddiff", "targets": "smooth"},
        {"algorithm": "retrain"},
        {"algorithm": "gradasc", "arch": "cnn", "channels": 4, "epochs": 1, "unlearn_steps": 8},
        DIVERGING,
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


def test_a_run_that_diverges_is_marked_and_stops_there_not_as_a_success():
    """Its forget accuracy would have read 0 once the weights were NaN (class 0 everywhere:
    below the stop at 0.5, a perfect forgetter); it is NaN instead, with `diverged` 1, and
    the run ends at the step it diverged."""
    final, curve, _ = run_directly(unlearn, {**SMALL, **DIVERGING, "seed": 0})
    assert final["diverged"] == 1.0
    after = ("forget_acc", "retain_acc", "test_acc", "test_forget_class_acc", "param_change",
             "param_change_rel")  # fmt: skip
    assert all(math.isnan(final[name]) for name in after)
    before = [final[f"{name}_before"] for name in after[:4]]  # kept: the model before it diverged
    assert final["forget_acc_before"] == pytest.approx(0.75) and np.isfinite(before).all()
    last = curve[-1]  # the step it diverged at, reported, and where it stopped
    assert 1 < final["steps_taken"] == last["step"] < SMALL["unlearn_steps"]
    assert math.isnan(last["forget_acc"]) and math.isnan(last["distance"])
    assert curve[0]["forget_acc"] == 1.0 and curve[0]["distance"] > 0


def test_a_run_that_does_not_diverge_has_diverged_0_and_its_distance_per_step():
    final, curve, _ = run_directly(unlearn, {**SMALL, **DIVERGING, "unlearn_lr": 0.01, "seed": 0})
    assert final["diverged"] == 0.0 and final["steps_taken"] == SMALL["unlearn_steps"]
    assert final["forget_acc"] == pytest.approx(curve[-1]["forget_acc"])
    assert final["param_change"] == pytest.approx(curve[-1]["distance"], rel=1e-5)
    distances = [report["distance"] for report in curve]
    assert 0 < distances[0] < distances[-1]  # ||theta - theta_0|| per report, growing


def test_fused_members_report_each_their_share_of_the_bundle_time():
    """Two seeds trained and unlearned together: the bundle's time is the training and
    unlearning it measured, inside the call's wall time; each member reports half of it
    (reporting all of it, the two would add up to about twice the wall time)."""
    config = {**SMALL, "epochs": 30, "unlearn_steps": 20}  # training: most of the call
    run_together(unlearn, [{**SMALL, "epochs": 1, "seed": s} for s in (0, 1)])  # first-call costs
    started = time.perf_counter()
    (first, _, _), (second, _, _) = run_together(unlearn, [{**config, "seed": s} for s in (0, 1)])
    wall = time.perf_counter() - started
    for timing in ("train_time_s", "unlearn_time_s"):
        assert first[timing] == second[timing] > 0
    bundle = 2 * (first["train_time_s"] + first["unlearn_time_s"])
    assert wall / 2 < bundle <= wall


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
    assert (ok["diverged"] == 0).all()
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
    assert "0 of 6 runs diverged" in md
    for matching in ("steps", "distance"):
        assert (sweep / "report" / f"unlearning-equal-{matching}.png").is_file()
        assert f"| all | soft T=2 | equal {matching} | 2 |" in md
    assert "Reference: models retrained" in md


def _sweep_with_a_diverged_run(root: Path) -> Path:
    """gradasc with hard and soft T=2 targets and retrain, seeds 0-2; the soft run of seed 2
    diverged at step 6: NaN accuracies, as unlearn_many records them."""
    hard = {
        "forget_acc": [0.1, 0.05, 0.0],
        "retain_acc": [0.9, 0.92, 0.94],
        "test_acc": [0.8, 0.82, 0.84],
        "steps_taken": [20, 30, 40],
    }
    soft = {
        "forget_acc": [1.0, 0.98, np.nan],
        "retain_acc": [0.3, 0.5, np.nan],
        "test_acc": [0.2, 0.4, np.nan],
        "steps_taken": [100, 100, 6],
    }
    retrain = {"forget_acc": [0.0] * 3, "retain_acc": [0.99] * 3, "test_acc": [0.89] * 3,
               "steps_taken": [0] * 3}  # fmt: skip
    rows = []
    for algorithm, targets, values in (("gradasc", "hard", hard), ("gradasc", "soft", soft),
                                       ("retrain", "hard", retrain)):  # fmt: skip
        for seed in range(3):
            rows.append(
                {"trial_id": f"{algorithm}-{targets}-{seed}", "status": "ok", "attempt": 0,
                 "seed": seed, "algorithm": algorithm, "targets": targets, "temperature": 2.0,
                 "diverged": float(targets == "soft" and seed == 2), "forget_acc_before": 1.0,
                 "retain_acc_before": 0.99, "test_acc_before": 0.9,
                 **{metric: float(v[seed]) for metric, v in values.items()}}
            )  # fmt: skip
    grid = {"algorithm": ["gradasc", "retrain"], "targets": ["hard", "soft"], "temperature": [2.0]}
    return make_sweep(root, "unl", rows, [], seeds=3, grid=grid)


def test_the_report_counts_diverged_runs_per_cell_and_leaves_them_out(tmp_path: Path):
    sweep = load(_sweep_with_a_diverged_run(tmp_path))
    (section,) = report_section(sweep, REPORT)
    text = [b for b in section.blocks if isinstance(b, str)]
    assert any(t.startswith("1 of 9 runs diverged") for t in text)
    cells = next(b for b in section.blocks if isinstance(b, pd.DataFrame) and "runs" in b)
    soft = cells.set_index("targets").loc["soft T=2"]
    assert (soft["runs"], soft["diverged"]) == (3, 1)
    assert soft["steps_taken (mean)"] == 100  # not (100 + 100 + 6) / 3
    assert soft["retain_acc (mean)"] == pytest.approx(0.4)
    assert cells.set_index("targets").loc["hard", "diverged"] == 0
    tests = next(b for b in section.blocks if isinstance(b, pd.DataFrame) and "test" in b)
    steps = tests.set_index("metric").loc["steps_taken"]
    assert steps["n"] == "2 pairs" and steps["diff"] == pytest.approx(75)  # seeds 0, 1
    plot = next(b for b in section.blocks if isinstance(b, Plot) and b.name.endswith("forget_acc"))
    legend = [t.get_text() for t in plot.figure.axes[0].get_legend().get_texts()]
    assert any(line.startswith("soft T=2 (n=2)") for line in legend)
    # the generic report: NaN accuracies drop out of n and of the mean; diverged is a metric
    settings = ReportSettings(metrics=["retain_acc", "diverged"])
    summary = analyse(sweep, settings).summary.set_index(["group", "metric"])
    group = next(g for g, _ in summary.index if "soft" in g and "gradasc" in g)
    assert summary.loc[(group, "retain_acc"), ["n", "mean"]].tolist() == pytest.approx([2, 0.4])
    assert summary.loc[(group, "diverged"), "mean"] == pytest.approx(1 / 3)


def _path(trial: str, before: tuple[float, float], reports: list[tuple]) -> tuple[dict, list]:
    """A trial row (label and seed from its name) and its reports (step, distance,
    retain, test)."""
    label, seed = trial.split("-")
    row = {"sweep": "s", "trial_id": trial, "seed": int(seed),
           "label": "hard" if label == "h" else "soft T=2",
           "retain_acc_before": before[0], "test_acc_before": before[1]}  # fmt: skip
    steps = [{"sweep": "s", "trial_id": trial, "step": step, "distance": d,
              "retain_acc": r, "test_acc": t} for step, d, r, t in reports]  # fmt: skip
    return row, steps


def test_soft_and_hard_runs_compared_at_equal_steps_and_at_equal_distance():
    """Known answers, retain accuracy (test accuracy moves alike, 0.1 lower):
    seed 0, hard stops at step 10 (distance 1.0): soft read at step 10, between its reports
    at 6 and 11: 0.7 + 4/5 (0.5 - 0.7) = 0.54; at distance 1.0, between 0.7 and 1.2:
    0.7 + 3/5 (0.5 - 0.7) = 0.58.
    seed 1, soft stops first (step 6, distance 1.0): hard read at step 6 between steps 1 and
    8: 0.9 - 5/7 0.2; at distance 1.0 between 0.5 and 2.0: 0.9 - 1/3 0.2.
    seed 2, hard stops at step 1, distance 0.1, before soft's first report (0.4): soft read
    between step 0 (the trained model, 1.0 at distance 0) and step 1: 1.0 - 1/4 0.2."""
    runs = [
        _path("h-0", (1.0, 0.9), [(1, 0.1, 0.98, 0.88), (6, 0.6, 0.9, 0.8), (10, 1.0, 0.8, 0.7)]),
        _path("s-0", (1.0, 0.9), [(1, 0.2, 0.96, 0.86), (6, 0.7, 0.7, 0.6), (11, 1.2, 0.5, 0.4),
                                  (100, 3.0, 0.1, 0.0)]),
        _path("h-1", (1.0, 0.9), [(1, 0.5, 0.9, 0.8), (8, 2.0, 0.7, 0.6)]),
        _path("s-1", (1.0, 0.9), [(1, 0.25, 0.95, 0.85), (6, 1.0, 0.75, 0.65)]),
        _path("h-2", (1.0, 0.9), [(1, 0.1, 0.9, 0.8)]),
        _path("s-2", (1.0, 0.9), [(1, 0.4, 0.8, 0.7), (100, 3.0, 0.2, 0.1)]),
    ]  # fmt: skip
    trials = pd.DataFrame([row for row, _ in runs])
    steps = pd.DataFrame([step for _, reported in runs for step in reported])
    pairs = equal_effort(trials, steps, []).set_index(["matched", "metric", "seed"])
    expected = {  # (matched, seed): at, soft, hard retain accuracy
        ("equal steps", 0): (10, 0.54, 0.8),
        ("equal steps", 1): (6, 0.75, 0.9 - 0.2 * 5 / 7),
        ("equal steps", 2): (1, 0.8, 0.9),
        ("equal distance", 0): (1.0, 0.58, 0.8),
        ("equal distance", 1): (1.0, 0.75, 0.9 - 0.2 / 3),
        ("equal distance", 2): (0.1, 0.95, 0.9),
    }
    for (matched, seed), (at, soft, hard) in expected.items():
        for metric, shift in (("retain_acc", 0.0), ("test_acc", 0.1)):
            row = pairs.loc[(matched, metric, seed)]
            assert row["at"] == pytest.approx(at)
            assert row["soft_value"] == pytest.approx(soft - shift)
            assert row["hard_value"] == pytest.approx(hard - shift)
    summary = effort_summary(equal_effort(trials, steps, [])).set_index(["matched", "metric"])
    for matched in ("equal steps", "equal distance"):
        diffs = [expected[(matched, s)][1] - expected[(matched, s)][2] for s in range(3)]
        row = summary.loc[(matched, "retain_acc")]
        assert row["n"] == 3 and row["diff"] == pytest.approx(np.mean(diffs))
        half = row["ci_high"] - row["diff"]
        assert half == pytest.approx(4.302653 * np.std(diffs, ddof=1) / np.sqrt(3), rel=1e-5)
