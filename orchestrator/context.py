"""The trial context an experiment function receives: `fn(config, trial)`.

It is all an experiment needs from the orchestrator, and it needs no Ray import:
report metrics per step, save artifacts, read the seed and the device.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from typing import Any

from orchestrator.spec import RESERVED_KEYS

Reporter = Callable[[dict[str, Any]], None]
ArtifactSaver = Callable[[str, Any], str]


class Trial:
    """One run of an experiment with one config.

    Attributes: `id` (stable hash of the config), `config`, `seed` (already set
    in Python's, NumPy's and, when the experiment imported it, torch's generators)
    `device` ("cuda" when Ray assigned this trial a GPU, else "mps" on Apple silicon when
    the experiment imported torch, else "cpu") and `inputs`
    (the sweeps named in the spec's `inputs:`, by name: `trial.inputs["models"].find(
    size="draft", seed=0)` gives a trial id, `.artifact(trial_id, "model.pt")` its file).
    """

    def __init__(
        self,
        trial_id: str,
        config: dict[str, Any],
        device: str,
        reporter: Reporter,
        artifact_saver: ArtifactSaver,
        inputs: dict[str, Any] | None = None,
    ) -> None:
        self.id = trial_id
        self.config = config
        self.seed: int = config["seed"]
        self.device = device
        self._reporter = reporter
        self._save = artifact_saver
        self.inputs = inputs or {}  # name -> orchestrator.store.inputs.SweepInput
        self._last_step = -1

    def report(self, step: int | None = None, **metrics: Any) -> None:
        """Record metrics at `step` (default: one past the last step): numbers, strings or
        one-element tensors; tensors leave their device together, in one transfer."""
        step = self._last_step + 1 if step is None else int(step)
        self._last_step = step
        self._reporter({"step": step, **check_metrics(metrics, self.config)})

    def save_artifact(self, name: str, obj: Any) -> str:
        """Store `obj` as `artifacts/<trial id>/<name>` in the sweep's storage; return its path.

        NumPy arrays are saved with np.save, bytes and str as they are, a
        pathlib.Path as the file's content, anything else with torch.save.
        """
        return self._save(name, obj)


def check_metrics(metrics: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Metrics as floats (or str), with names that clash with no column."""
    for name in metrics:
        if name in RESERVED_KEYS or name in config:
            raise ValueError(
                f'metric "{name}" has the name of a config key or a trials-table column; rename it'
            )
    checked = {**metrics, **fetch_tensors(metrics)}
    for name, value in checked.items():
        if isinstance(value, str):
            continue
        try:
            checked[name] = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f'metric "{name}" is {type(value).__name__}; report numbers, strings or '
                "one-element tensors"
            ) from None
    return checked


def fetch_tensors(values: dict[str, Any]) -> dict[str, float]:
    """The one-element tensors among `values` as floats, copied off their device in one
    transfer (one synchronisation per report, not one per metric)."""
    torch = sys.modules.get("torch")  # an experiment that reports tensors imported it
    tensors = {k: v for k, v in values.items() if torch is not None and torch.is_tensor(v)}
    if not tensors:
        return {}
    for name, tensor in tensors.items():
        if tensor.numel() != 1:
            raise TypeError(
                f'metric "{name}" is a tensor of {tensor.numel()} numbers; report one number'
            )
    device = next(iter(tensors.values())).device
    wide = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    together = torch.stack([t.detach().reshape(()).to(device, wide) for t in tensors.values()])
    return dict(zip(tensors, together.tolist(), strict=True))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if the experiment's module imported it) torch."""
    random.seed(seed)
    import numpy as np

    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
