"""Linear regression by gradient descent on synthetic data, in plain PyTorch.

The quickstart experiment: small enough to run dozens of trials on a laptop in a
minute, real enough to show learning-rate and optimizer effects across seeds.
The seed draws the data set, the initial weights and the batch order, all on the
CPU (the same on any device); data and batch indices then move to the trial's
device once. Copy it to start an experiment of your own (docs/experiments.md).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, Field

from orchestrator import Trial, experiment


class RegressionParams(BaseModel):
    lr: float = Field(gt=0, description="learning rate")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="optimizer")
    steps: int = Field(100, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="examples per step")
    features: int = Field(16, ge=1, description="input dimensions of the synthetic data")
    samples: int = Field(512, ge=5, description="examples drawn; 80% train, 20% validation")
    noise: float = Field(0.5, ge=0, description="standard deviation of the label noise")


def make_data(n: int, features: int, noise: float, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    w_true = torch.randn(features, 1, generator=g)
    x = torch.randn(n, features, generator=g)
    y = x @ w_true + noise * torch.randn(n, 1, generator=g)
    split = int(0.8 * n)
    return x[:split], y[:split], x[split:], y[split:]


@experiment(params=RegressionParams)
def regression(config: dict[str, Any], trial: Trial) -> dict[str, float]:
    """Fit a linear model: train and validation loss every 10th step and the last, the
    weights as an artifact, the final validation loss as the result."""
    data = make_data(config["samples"], config["features"], config["noise"], trial.seed)
    x_train, y_train, x_val, y_val = (part.to(trial.device) for part in data)
    model = torch.nn.Linear(x_train.shape[1], 1).to(trial.device)
    optimizers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
    optimizer = optimizers[config["optimizer"]](model.parameters(), lr=config["lr"])
    steps, batch = config["steps"], config["batch_size"]
    batches = torch.randint(0, len(x_train), (steps, batch)).to(trial.device)
    loss_fn = torch.nn.MSELoss()
    for step, idx in enumerate(batches):
        loss = loss_fn(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == steps - 1:
            with torch.no_grad():
                val = loss_fn(model(x_val), y_val)
            trial.report(step=step, train_loss=loss, val_loss=val)  # tensors: one transfer
    trial.save_artifact("weights.pt", model.state_dict())
    with torch.no_grad():
        return {"val_loss": loss_fn(model(x_val), y_val).item()}
