"""Unlearning with soft vs hard targets (SCIENCE.md section 3, seed notebook 000).

Each trial trains a classifier (`arch`: mlp or cnn) on the training set from its
seed, then makes it forget the forget set (`forget_class`, or a random
`forget_fraction` of the training set) with `algorithm`:
  gradasc    gradient ascent on the forget set: minimise -CE(model(x_f), targets)
  graddiff   gradient difference: -CE on the forget set + CE on the retain set
  retrain    the reference: the same initial weights trained on the retain set only
The targets on the forget set (`targets`):
  hard       the true labels, one-hot
  soft       the original model's softmax at `temperature` > 1
  smooth     label smoothing: (1 - smoothing) one-hot + smoothing / classes
Soft targets stay probability vectors: the seed notebook took their argmax, which
made them hard labels again. At temperature 1 the targets equal the model's own
predictions and the first gradient of the cross-entropy is exactly zero, so
nothing is unlearned: such a config is refused.

Metrics: forget / retain / test accuracy before and after (and, forgetting a class,
accuracy on that class in the test set), ||theta - theta_0||_2 and its ratio to
||theta_0||, unlearning steps and time, and `diverged`. theta_0 is the trained model; for
retrain, the change is that of the retrained model from it. Each report during unlearning
(every `eval_every` steps and at the last step) carries the loss, the accuracies and
||theta - theta_0|| (`distance`), for comparisons at equal steps or equal distance.

Divergence: ascent has no minimum, and a large enough step sends the weights to inf/NaN.
A member whose parameters turn non-finite stops there: `steps_taken` is the step whose
update did it, that step is its last report, and it never counts as having reached
`stop_at_forget_acc` (argmax of NaN logits is class 0, which would look like perfect
forgetting of any other class). Its trial ends `ok` with `diverged` = 1 and NaN after-
unlearning accuracies, `param_change` and `param_change_rel` (the `*_before` accuracies
stay); so does one whose final logits are non-finite on some set while its weights are
finite. Every other trial has `diverged` = 0.

Timings of a fused bundle (experiments/stacked.py): `train_time_s` and `unlearn_time_s` are
each member's share, the bundle's time divided by its members (a solo trial: its own).

Parameters: `UnlearningParams` below (`sweep experiments unlearning`).
"""

from __future__ import annotations

import time
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, model_validator
from torch import nn

from analysis.unlearning import REPORT, report_section
from experiments.stacked import Stack
from experiments.vision.data import DIGITS, Images, Split, load_images, split
from experiments.vision.models import accuracy, build, finite_parameters, flat_parameters
from orchestrator import Trial, experiment

Algorithm = Literal["gradasc", "graddiff", "retrain"]
Targets = Literal["hard", "soft", "smooth"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
TARGETS: tuple[str, ...] = get_args(Targets)


class UnlearningParams(BaseModel):
    dataset: str = Field(DIGITS, description='"digits" (bundled) or a folder of MNIST IDX files')
    arch: Literal["mlp", "cnn"] = Field("mlp", description="classifier")
    width: int = Field(64, ge=1, description="units per hidden layer (mlp)")
    depth: int = Field(2, ge=0, description="hidden layers (mlp)")
    channels: int = Field(16, ge=1, description="channels of the first convolution (cnn)")
    forget_class: int | None = Field(
        None, ge=0, description="forget every training example of this class"
    )
    forget_fraction: float | None = Field(
        None, gt=0, lt=1, description="or forget this random share of the training set"
    )
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of the data held out")
    data_seed: int = Field(0, ge=0, description="draws the test and forget sets (not the seed)")
    epochs: int = Field(30, ge=1, description="training epochs (and retraining epochs)")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate of training")
    batch_size: int = Field(64, ge=1, description="examples per step, training and unlearning")
    algorithm: Algorithm = Field(
        "gradasc", description="gradasc, graddiff, or retrain (the reference)"
    )
    targets: Targets = Field("hard", description="targets on the forget set")
    temperature: float = Field(
        2.0, gt=0, description="softmax temperature of soft targets (> 1: at 1 nothing moves)"
    )
    smoothing: float = Field(0.1, gt=0, lt=1, description="label smoothing of smooth targets")
    unlearn_steps: int = Field(100, ge=0, description="most SGD steps of unlearning")
    unlearn_lr: float = Field(0.002, gt=0, description="SGD learning rate of unlearning")
    stop_at_forget_acc: float | None = Field(
        None, ge=0, le=1, description="stop once the forget accuracy is at most this"
    )
    eval_every: int = Field(5, ge=1, description="unlearning steps between reported accuracies")

    @model_validator(mode="after")
    def _one_forget_set(self) -> UnlearningParams:
        if (self.forget_class is None) == (self.forget_fraction is None):
            raise ValueError("set exactly one of forget_class and forget_fraction")
        return self


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against probability vectors (one-hot rows give the usual CE) over
    the rows of (n, classes) logits; of (members, n, classes) logits, one per member."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean(dim=-1)


def make_targets(
    kind: str,
    y: torch.Tensor,
    logits: torch.Tensor,
    temperature: float = 2.0,
    smoothing: float = 0.1,
) -> torch.Tensor:
    """(n, classes) target distributions for labels y, given the original model's logits."""
    classes = logits.shape[1]
    one_hot = F.one_hot(y, classes).float()
    if kind == "hard":
        return one_hot
    if kind == "soft":
        if temperature <= 1:
            raise ValueError(
                f"temperature {temperature}: soft targets need temperature > 1. At 1 they equal "
                "the model's own predictions, so the gradient of the cross-entropy is exactly "
                "zero and nothing is unlearned (SCIENCE.md section 3)"
            )
        return torch.softmax(logits.detach() / temperature, dim=1)
    if kind == "smooth":
        if not 0 < smoothing < 1:
            raise ValueError(f"smoothing {smoothing}: must lie in (0, 1)")
        return (1 - smoothing) * one_hot + smoothing / classes
    raise ValueError(f"targets {kind!r}: use one of {', '.join(TARGETS)}")


def unlearn_many(configs: list[dict[str, Any]], trials: list[Trial]) -> list[dict[str, Any]]:
    """Train, then unlearn, one classifier per trial, all at once (a bundle's members,
    experiments/stacked.py); they may differ in their seeds only (`varies` below, checked
    before a run). Each member has its own initial weights, batch order and unlearning
    draws, from generators seeded with its seed as when it runs alone; one that reaches
    `stop_at_forget_acc` or diverges stops moving (zero gradient under plain SGD) while the
    others go on. The bundle's training and unlearning times are shared out equally: each
    member reports the bundle's time over the number of members."""
    config, device = configs[0], trials[0].device
    seeds = [trial.seed for trial in trials]
    data = split(
        load_images(config["dataset"]),
        config["forget_class"],
        config["forget_fraction"],
        config["test_fraction"],
        config["data_seed"],
    )
    data = Split(*(_to(part, device) for part in (data.forget, data.retain, data.test)))
    models = Stack([_initial(config, data, seed).to(device) for seed in seeds])
    initial = [p.detach().clone() for p in models.parameters()]
    train_time = train(models, data.train, config, seeds)
    theta_0 = flat_parameters(models)
    sets = evaluation_sets(data, config)
    before = accuracies(models, sets)
    started = time.perf_counter()
    if config["algorithm"] == "retrain":
        with torch.no_grad():
            for param, start in zip(models.parameters(), initial, strict=True):
                param.copy_(start)
        train(models, data.retain, config, seeds)
        steps = [0] * len(seeds)
    else:
        graddiff = config["algorithm"] == "graddiff"
        steps = forget(models, data, sets, config, trials, theta_0, graddiff)
    seconds = elapsed(started, data.test.y.device)
    after = accuracies(models, sets)
    bad = diverged(models, after, sets)
    after = {name: value.masked_fill(bad, float("nan")) for name, value in after.items()}
    change = distance(models, theta_0).masked_fill(bad, float("nan")).double()
    relative = change / theta_0.norm(dim=1).double()
    return [  # tensors among these leave the device together
        {
            **{f"{name}_before": value[i] for name, value in before.items()},
            **{name: value[i] for name, value in after.items()},
            "param_change": change[i],
            "param_change_rel": relative[i],
            "steps_taken": steps[i],
            "diverged": bad[i].float(),
            "unlearn_time_s": seconds / len(seeds),
            "train_time_s": train_time / len(seeds),
        }
        for i in range(len(seeds))
    ]


def distance(models: Stack, theta_0: torch.Tensor) -> torch.Tensor:
    """Each member's ||theta - theta_0||_2 on its device: (members,)."""
    return (flat_parameters(models) - theta_0).norm(dim=1)


def diverged(
    models: Stack, after: dict[str, torch.Tensor], sets: dict[str, Images]
) -> torch.Tensor:
    """Per member: are some of its parameters non-finite, or its logits on some set (a NaN
    accuracy on a non-empty set: experiments/vision/models.accuracy)? (members,)
    booleans."""
    non_finite_logits = [after[name].isnan() for name, part in sets.items() if len(part)]
    return ~finite_parameters(models) | torch.stack(non_finite_logits).any(dim=0)


def _initial(config: dict[str, Any], data: Split, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build(config, tuple(data.test.x.shape[1:]), data.n_classes)


def train(models: Stack, data: Images, config: dict[str, Any], seeds: list[int]) -> float:
    """`epochs` of Adam over shuffled minibatches, each member's order from its own seed.
    Seconds taken."""
    optimizer = torch.optim.Adam(models.parameters(), lr=config["lr"])
    orders = [torch.Generator().manual_seed(seed) for seed in seeds]
    batch, epochs = config["batch_size"], config["epochs"]
    shuffles = on_device(
        [
            torch.stack([torch.randperm(len(data), generator=order) for order in orders], dim=1)
            for _ in range(epochs)
        ],
        data,
    )  # (epochs, examples, members)
    started = time.perf_counter()
    for shuffle in shuffles:
        for index in shuffle.split(batch):  # (batch, members)
            index = index.T
            loss = member_losses(models(data.x[index]), data.y[index]).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return elapsed(started, data.y.device)


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each member's mean cross-entropy: logits (members, n, classes), labels (members, n)."""
    losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    return losses.view(len(logits), -1).mean(dim=1)


def forget(
    models: Stack,
    data: Split,
    sets: dict[str, Images],
    config: dict[str, Any],
    trials: list[Trial],
    theta_0: torch.Tensor,
    graddiff: bool,
) -> list[int]:
    """SGD on each member's unlearning loss for `unlearn_steps`, or until its forget
    accuracy is at most `stop_at_forget_acc` (gradient ascent has no minimum: run on, it
    wrecks the whole model), or until its parameters turn non-finite (diverged: never a
    success). Loss, accuracies and ||theta - theta_0|| every `eval_every` steps, at the last
    step and at the step a member stops; returns the steps each member took."""
    with torch.no_grad():
        logits = models(data.forget.x, shared=True)
    targets = torch.stack(
        [
            make_targets(
                config["targets"], data.forget.y, member, config["temperature"], config["smoothing"]
            )
            for member in logits
        ]
    )
    optimizer = torch.optim.SGD(models.parameters(), lr=config["unlearn_lr"])
    batch, steps = config["batch_size"], config["unlearn_steps"]
    every, stop = config["eval_every"], config["stop_at_forget_acc"]
    indices = torch.stack(
        [
            _draws(len(data.forget), len(data.retain), batch, steps, graddiff, t.seed)
            for t in trials
        ],
        dim=1,
    ).to(data.test.y.device)  # (steps, members, 1 or 2, batch)
    moving = [True] * len(trials)  # members still unlearning
    taken = [steps] * len(trials)
    members = torch.arange(len(trials), device=data.test.y.device).unsqueeze(1)
    for step, draws in enumerate(indices):
        index = draws[:, 0]  # (members, batch)
        loss = -soft_cross_entropy(models(data.forget.x[index]), targets[members, index])
        if graddiff:
            keep = draws[:, 1]
            loss = loss + member_losses(models(data.retain.x[keep]), data.retain.y[keep])
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        models.hold(moving)  # a member that stopped stays as it was
        optimizer.step()
        finite, below = _checks(models, data.forget, stop)
        done = [m and (b or not f) for m, f, b in zip(moving, finite, below, strict=True)]
        if step % every == 0 or step == steps - 1 or any(done):
            now = {**accuracies(models, sets), "distance": distance(models, theta_0)}
            for i, trial in enumerate(trials):
                if moving[i] and (step % every == 0 or step == steps - 1 or done[i]):
                    trial.report(step=step + 1, loss=loss[i], **{k: v[i] for k, v in now.items()})
        for i in (i for i, d in enumerate(done) if d):
            taken[i], moving[i] = step + 1, False
        if not any(moving):
            break
    return taken


def _checks(models: Stack, forget_set: Images, stop: float | None) -> tuple[list[bool], list[bool]]:
    """Per member: are its parameters all finite, and is its forget accuracy at most `stop`
    (never, without a `stop`, or with NaN logits)? One synchronisation per step, as alone."""
    finite = finite_parameters(models)
    below = torch.zeros_like(finite)
    if stop is not None:
        below = accuracy(models, forget_set.x, forget_set.y) <= stop
    flags = torch.stack([finite, below]).tolist()
    return flags[0], flags[1]


def _draws(
    n_forget: int, n_retain: int, batch: int, steps: int, graddiff: bool, seed: int
) -> torch.Tensor:
    """One member's random indices, drawn on the CPU from its seed (the same on every
    device): per step a forget batch, then (graddiff) a retain batch. (steps, 1 or 2, batch)"""
    order = torch.Generator().manual_seed(seed)
    draws = []
    for _ in range(steps):
        draws.append(torch.randint(0, n_forget, (batch,), generator=order))
        if graddiff:
            draws.append(torch.randint(0, n_retain, (batch,), generator=order))
    stacked = torch.stack(draws) if draws else torch.empty(0, dtype=torch.long)
    return stacked.view(steps, 2 if graddiff else 1, batch)


def on_device(draws: list[torch.Tensor], data: Images) -> torch.Tensor:
    """Random indices drawn on the CPU (the same on every device), stacked and moved to
    the data's device once rather than once per step."""
    stacked = torch.stack(draws) if draws else torch.empty(0, dtype=torch.long)
    return stacked.to(data.y.device)


def elapsed(started: float, device: torch.device) -> float:
    """Seconds since `started`, once the device has done the work queued so far (a GPU
    runs it after Python has moved on)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def evaluation_sets(data: Split, config: dict[str, Any]) -> dict[str, Images]:
    """The sets accuracy is measured on, by metric name: forget, retain and test (and,
    forgetting a class, that class in the test set)."""
    sets = {"forget_acc": data.forget, "retain_acc": data.retain, "test_acc": data.test}
    if config["forget_class"] is not None:
        sets["test_forget_class_acc"] = data.test[data.test.y == config["forget_class"]]
    return sets


def accuracies(model: nn.Module, sets: dict[str, Images]) -> dict[str, torch.Tensor]:
    """Accuracy on each set, as tensors on the model's device: `trial.report` fetches
    them together."""
    return {name: accuracy(model, part.x, part.y) for name, part in sets.items()}


def _to(images: Images, device: str) -> Images:
    return Images(images.x.to(device), images.y.to(device))


@experiment(
    params=UnlearningParams,
    fused=unlearn_many,  # a bundle of seeds (spec `bundle:`) trains and unlearns together
    varies=["seed"],
    report=REPORT,  # `sweep report`: directions,
    sections=[report_section],  # and soft vs hard distributions
)
def unlearn(config: dict[str, Any], trial: Trial) -> dict[str, Any]:
    """One trial: `unlearn_many` with one member."""
    return unlearn_many([config], [trial])[0]
