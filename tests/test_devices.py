"""Every shipped experiment keeps its tensors on `trial.device`, checked without a GPU.

PyTorch's lazy tensor backend (device "lazy", in CPU builds too) is a second device on
this machine: an op that mixes a lazy tensor with a CPU tensor fails, as it does with a
CUDA tensor. Each experiment runs here on "lazy" with the real `Trial` context, so a
tensor left on the CPU (the index of a batch, a model input, a generator's output) fails
the test as it failed on a real GPU. The experiments with a fused implementation
(`fused`: several seeds at once, vmapped) run it too, with two members. Results and
reported steps must equal the CPU run's: the seeded streams (initial weights, batch
order, sampling) are the same on every device.

The lazy backend differs from CUDA in three ways, made up for during the check: it
accepts a CPU random generator for its tensors (CUDA refuses one), so torch's random
functions are wrapped to refuse it too; it hands back CPU tensors from `split` and
`unbind` (which iterating over a tensor calls), so those are done by slicing, which
gives the same views; and it compiles each new graph, so it is slow: the configs are tiny.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_directly, run_together

from analysis.tables import DEVICE_COLUMNS
from experiments.lmeval import evaluate
from experiments.regression import regression
from experiments.reproducibility import train_lm
from experiments.tridecoding import decode
from experiments.unlearning import unlearn
from orchestrator.context import check_metrics
from orchestrator.store.artifacts import ArtifactWriter, encode
from orchestrator.store.folder import SweepStore
from orchestrator.store.inputs import SweepInput
from orchestrator.summary import gpu_memory_lines
from orchestrator.worker import devices

LM = {"activation": "relu", "n_head": 2, "block_size": 32, "batch_size": 4, "eval_windows": 2}
SIZES = {"little": (1, 8), "draft": (1, 16), "target": (1, 24)}  # n_layer, n_embd
DIGITS = {"forget_class": 3, "epochs": 1, "batch_size": 512, "unlearn_steps": 3, "eval_every": 2}
DECODE = {"small_draft_threshold": 0.5, "draft_target_threshold": 0.5, "n_prompts": 1,
          "prompt_len": 8, "n_tokens": 8}  # fmt: skip
LMEVAL = {"model_size": "target", "n_pairs": 1, "pair_context": 16, "n_documents": 2,
          "document_len": 80, "loss_bin": 16, "slope_from": 32}  # fmt: skip

CASES = {  # experiment, config, the results that must equal the CPU run's
    "regression": (regression, {"lr": 0.05, "steps": 12, "optimizer": "adam"}, ["val_loss"]),
    "reproducibility": (
        train_lm,
        {
            **LM,
            "activation": "smelu",
            "beta": 0.5,
            "n_layer": 1,
            "n_embd": 16,
            "steps": 2,
            "eval_every": 1,
        },  # fmt: skip
        ["val_loss", "eval_inputs_sha1"],
    ),
    "unlearning-graddiff-soft": (
        unlearn,
        {**DIGITS, "algorithm": "graddiff", "targets": "soft", "stop_at_forget_acc": 0.0},
        ["forget_acc", "retain_acc", "test_forget_class_acc", "param_change"],
    ),
    "unlearning-retrain-cnn": (
        unlearn,
        {**DIGITS, "algorithm": "retrain", "arch": "cnn", "channels": 4},
        ["test_acc", "param_change"],
    ),
    "tridecoding-greedy": (
        decode,
        {**DECODE, "greedy": True},
        ["matches_target", "target_calls", "draft_generated_tokens", "little_generated_tokens"],
    ),
    "tridecoding-sampled": (decode, {**DECODE, "greedy": False}, ["target_calls"]),
    "tridecoding-no-cache": (
        decode,
        {**DECODE, "greedy": True, "kv_cache": False},
        ["matches_target", "target_calls", "draft_generated_tokens", "little_generated_tokens"],
    ),
    "lmeval-ttt": (
        evaluate,
        {**LMEVAL, "variant": "ttt", "ttt_lr": 0.1},
        ["lexical_acc", "syntactic_acc_norm", "long_loss", "loss_slope"],
    ),
}


FUSED = {  # the experiments with a fused implementation: two seeds at once, vmapped
    "reproducibility": (train_lm, CASES["reproducibility"][1], ["val_loss"]),
    "unlearning-graddiff-soft": CASES["unlearning-graddiff-soft"],
}


@pytest.fixture(scope="module")
def lazy():
    """The lazy backend, started once; skipped (saying why) in a torch build without it.
    While the module runs, random functions refuse a generator on another device than
    their output, and split and unbind slice (see above)."""
    try:
        import torch._lazy.ts_backend
    except ImportError as exc:
        pytest.skip(f"this torch build has no lazy tensor backend to stand in for a GPU: {exc}")
    torch._lazy.ts_backend.init()
    with pytest.MonkeyPatch.context() as patch:
        for name in RANDOM:
            patch.setattr(torch, name, generator_checked(getattr(torch, name)))
        patch.setattr(torch.Tensor, "split", split_by_slicing)
        patch.setattr(torch.Tensor, "unbind", unbind_by_slicing)
        patch.setattr(torch.Tensor, "__iter__", lambda t: iter(unbind_by_slicing(t)))
        yield "lazy"


RANDOM = ("multinomial", "rand", "randn", "randint", "randperm", "normal", "bernoulli")


def generator_checked(draw):
    """`draw`, failing as on CUDA when its generator is on another device than its output."""

    def checked(*args, **kwargs):
        out = draw(*args, **kwargs)
        generator = kwargs.get("generator")
        if generator is not None and generator.device.type != out.device.type:
            raise RuntimeError(
                f"Expected a '{out.device.type}' device type for generator but found "
                f"'{generator.device.type}' (the device check, as CUDA says it)"
            )
        return out

    return checked


def split_by_slicing(tensor: torch.Tensor, size, dim: int = 0) -> tuple[torch.Tensor, ...]:
    if not isinstance(size, int):
        raise TypeError("the device check slices into equal parts only; give split an int")
    n = tensor.shape[dim]
    return tuple(tensor.narrow(dim, start, min(size, n - start)) for start in range(0, n, size))


def unbind_by_slicing(tensor: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, ...]:
    return tuple(tensor.select(dim, i) for i in range(tensor.shape[dim]))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> SweepInput:
    """Three tiny trained LMs as a sweep folder, written by the real store: the input of
    the tri-decoding and LM-evaluation experiments."""
    store = SweepStore(str(tmp_path_factory.mktemp("inputs")), "sizes")
    writer = ArtifactWriter(str(Path(store.path).parent), "sizes")
    rows = []
    for size, (n_layer, n_embd) in SIZES.items():
        config = {**LM, "n_layer": n_layer, "n_embd": n_embd, "steps": 2, "size": size, "seed": 0}
        final, _, artifacts = run_directly(train_lm, config)
        writer.write(size, "model.pt", encode(artifacts["model.pt"]))
        rows.append({"trial_id": size, "status": "ok", "attempt": 0, **config, **final})
    store.append("trials", rows)
    store.write_meta({"name": "sizes", "experiment": "reproducibility"})
    return SweepInput("models", store.uri)


@pytest.mark.parametrize("case", list(CASES))
def test_every_experiment_keeps_its_tensors_on_the_trial_device(case, lazy, models):
    fn, config, same = CASES[case]
    config = {**config, "seed": 0}  # the seed of the models
    on_cpu = run_directly(fn, config, "cpu", {"models": models})
    assert_as_on_the_cpu(run_directly(fn, config, lazy, {"models": models}), on_cpu, same)


@pytest.mark.parametrize("case", list(FUSED))
def test_fused_members_keep_their_tensors_on_the_trial_device(case, lazy):
    fn, config, same = FUSED[case]
    configs = [{**config, "seed": seed} for seed in (0, 1)]
    on_cpu = run_together(fn, configs, "cpu")
    assert on_cpu[0][0][same[0]] != on_cpu[1][0][same[0]]  # two members, not one twice
    for member, cpu_member in zip(run_together(fn, configs, lazy), on_cpu, strict=True):
        assert_as_on_the_cpu(member, cpu_member, same)


def assert_as_on_the_cpu(elsewhere: tuple, on_cpu: tuple, same: list[str]) -> None:
    """A run on the lazy device reported the CPU run's steps, to float rounding, and the
    same `same` results (strings exactly)."""
    (final, steps, _), (cpu_final, cpu_steps, _) = elsewhere, on_cpu
    assert [s["step"] for s in steps] == [s["step"] for s in cpu_steps]
    for got, expected in zip(steps, cpu_steps, strict=True):
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-5, nan_ok=True)
    for name in same:
        if isinstance(cpu_final[name], str):
            assert final[name] == cpu_final[name], name
        else:
            assert final[name] == pytest.approx(cpu_final[name], rel=1e-4, abs=1e-5), name


def test_reported_tensors_arrive_as_numbers_from_any_device(lazy):
    values = {"a": torch.tensor(2.5), "b": torch.tensor([3]), "c": 1, "s": "text"}
    assert check_metrics(values, {}) == {"a": 2.5, "b": 3.0, "c": 1.0, "s": "text"}
    on_device = {"loss": torch.tensor(0.25, device=lazy), "n": torch.tensor(7, device=lazy)}
    assert check_metrics(on_device, {}) == {"loss": 0.25, "n": 7.0}
    with pytest.raises(TypeError, match='metric "many" is a tensor of 2 numbers'):
        check_metrics({"many": torch.tensor([1.0, 2.0])}, {})


def test_a_tensor_left_on_the_cpu_fails_the_check(lazy):
    """The control: the check catches the bug that crashed two experiments on a GPU."""

    def leaves_its_data_behind(config, trial):
        model = torch.nn.Linear(3, 1).to(trial.device)
        return {"out": model(torch.ones(2, 3)).sum()}

    with pytest.raises(RuntimeError, match="lazy"):
        run_directly(leaves_its_data_behind, {"seed": 0}, lazy)
    assert run_directly(leaves_its_data_behind, {"seed": 0}, "cpu")[0]["out"] != 0

    probs = torch.ones(4, device=lazy)  # the old sampling: a CPU generator for device tensors
    with pytest.raises(RuntimeError, match="device type for generator"):
        torch.multinomial(probs, 1, generator=torch.Generator())
    assert torch.multinomial(probs.cpu(), 1, generator=torch.Generator()).item() in range(4)


def test_status_shows_peak_gpu_memory_against_the_device_and_how_many_trials_fit():
    gib = 2**30
    trials = pd.DataFrame(
        {
            "device": ["cuda"] * 3 + ["cpu"],
            "gpu_name": ["NVIDIA H200"] * 3 + [None],
            "gpu_memory_total": [140 * gib] * 3 + [None],
            "gpu_memory_peak": [1 * gib, 2 * gib, 6 * gib, None],
            "gpu_memory_reserved": [2 * gib, 3 * gib, 7 * gib, None],
        }
    )
    lines = gpu_memory_lines(trials, {"gpu": 0.25})
    assert lines == [
        "GPU memory per trial attempt (peak since it began; the spec asks 0.25 GPU per trial, "
        "4 per GPU):",
        "  NVIDIA H200 (140.00 GiB), 3 attempts: allocated median 2.00 GiB, max 6.00 GiB "
        "(4.3%); reserved max 7.00 GiB",
        "    20 trials like the largest fit in one GPU's memory (each process also holds a "
        "CUDA context, not counted here)",
    ]
    assert gpu_memory_lines(trials[trials["device"] == "cpu"], {}) == []  # no GPU: no section


def test_the_trial_device_is_cuda_with_a_gpu_else_apple_silicons_else_the_cpu(monkeypatch):
    """On this machine torch has no MPS: its check is made to say yes, as on a Mac."""
    assert (devices.choose(True), devices.choose(False)) == ("cuda", "cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert (devices.choose(True), devices.choose(False)) == ("cuda", "mps")
    monkeypatch.delitem(sys.modules, "torch")  # an experiment that does not use torch
    assert devices.choose(False) == "cpu"


def test_an_mps_trial_records_its_device_and_leaves_the_cuda_columns_empty(monkeypatch):
    def no_cuda() -> None:
        raise AssertionError("a CUDA call for an MPS trial")

    for name in ("is_available", "is_initialized", "current_device", "max_memory_allocated"):
        monkeypatch.setattr(torch.cuda, name, no_cuda)
    devices.start("mps")
    empty = dict.fromkeys(DEVICE_COLUMNS) | {"device": "mps"}
    assert devices.describe("mps") == devices.usage("mps") == empty
