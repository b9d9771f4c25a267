"""The function Ray Tune runs for every trial: it wraps the experiment function.

It seeds the generators, builds the `Trial` context, sends each step to the
driver through `ray.tune.report`, and ends with one report that carries the
final metrics (or the traceback): the last reported value of every metric,
overridden by what the experiment returns. Everything the driver's sink needs travels in
the reported results under META_KEY.
"""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator import devices, oomkill
from orchestrator.artifacts import ArtifactWriter, encode, remote_writer
from orchestrator.context import Trial, check_metrics, seed_everything
from orchestrator.inputs import SweepInput
from orchestrator.provenance import package_versions
from orchestrator.store import StorageFull
from orchestrator.trials import TrialIndex

META_KEY = "__raysweep__"


@dataclass(frozen=True)
class RunContext:
    """What every trial of one run needs to know, shipped to workers with the trainable."""

    index: TrialIndex
    storage: str
    sweep: str
    driver_node: str
    inputs: dict[str, SweepInput] = field(default_factory=dict)  # other sweeps trials read


def make_trainable(fn: Callable[..., Any], ctx: RunContext) -> Callable[[dict[str, Any]], None]:
    def raysweep_trial(tune_config: dict[str, Any]) -> None:
        run_trial(fn, ctx, *ctx.index.lookup(tune_config))

    return raysweep_trial


def run_trial(fn: Callable[..., Any], ctx: RunContext, tid: str, config: dict[str, Any]) -> None:
    import ray

    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    node = ray.get_runtime_context().get_node_id()
    device = "cuda" if gpu_ids else "cpu"
    meta: dict[str, Any] = {
        "started_at": time.time(),
        "node": node,
        "host": socket.gethostname(),
        "gpu_ids": ",".join(gpu_ids),
        **devices.describe(device),
        **package_versions(),
    }
    saver = _artifact_saver(ctx, tid, local=node == ctx.driver_node)
    latest: dict[str, Any] = {}  # last reported value of each metric
    trial = Trial(tid, config, device, _reporter(meta, latest), saver, ctx.inputs)
    seed_everything(trial.seed)
    with oomkill.watched():
        _attempt(fn, config, trial, meta, latest)


def _attempt(
    fn: Callable[..., Any],
    config: dict[str, Any],
    trial: Trial,
    meta: dict[str, Any],
    latest: dict[str, Any],
) -> None:
    """Run the experiment once and report how it ended: its final metrics, or the error."""
    from ray import tune

    try:
        devices.start(trial.device)
        final = fn(config, trial) or {}
        if not isinstance(final, dict):
            raise TypeError(
                f"the experiment returned {type(final).__name__}; return a dict of metrics"
            )
        final = {**latest, **check_metrics(final, config)}
    except Exception as exc:
        error = {"kind": "error", "error": traceback.format_exc()}
        if isinstance(exc, StorageFull):  # the driver stops the sweep
            error["full"] = str(exc)
        tune.report({META_KEY: {**meta, **devices.usage(trial.device), **error}})
        raise
    end = {"kind": "final", "names": list(final)}
    tune.report({**final, META_KEY: {**meta, **devices.usage(trial.device), **end}})


def _reporter(meta: dict[str, Any], latest: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    from ray import tune

    first = True

    def report(metrics: dict[str, Any]) -> None:
        nonlocal first
        extra = meta if first else {}  # the first step tells the driver where it runs
        first = False
        latest.update((k, v) for k, v in metrics.items() if k != "step")
        info = {**extra, "kind": "step", "names": list(metrics), "time": time.time()}
        tune.report({**metrics, META_KEY: info})

    return report


def _artifact_saver(ctx: RunContext, tid: str, local: bool) -> Callable[[str, Any], str]:
    writer: list[Any] = []

    def save(name: str, obj: Any) -> str:
        data = encode(obj)
        if local or "://" in ctx.storage:
            return ArtifactWriter(ctx.storage, ctx.sweep).write(tid, name, data)
        import ray

        if not writer:
            writer.append(remote_writer(ctx.storage, ctx.sweep, ctx.driver_node))
        return ray.get(writer[0].write.remote(tid, name, data))

    return save
