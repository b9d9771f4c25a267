"""The function Ray Tune runs for every trial: it wraps the experiment function.

It seeds the generators, builds the `Trial` context, sends each step to the
driver through `ray.tune.report`, and ends with one report that carries the
final metrics (or the traceback): the last reported value of every metric,
overridden by what the experiment returns. Everything the driver's sink needs travels in
the reported results under META_KEY. A bundle of trials (orchestrator/bundles.py) uses
the same pieces for each of its members.
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
Send = Callable[[dict[str, Any]], None]  # one report to the driver: metrics + META_KEY


@dataclass(frozen=True)
class RunContext:
    """What every trial of one run needs to know, shipped to workers with the trainable."""

    index: TrialIndex
    storage: str
    sweep: str
    driver_node: str
    inputs: dict[str, SweepInput] = field(default_factory=dict)  # other sweeps trials read
    retries: int = 0  # the spec's retries: a bundle with a failed member fails to be retried


class Shipped:
    """A run's context in Ray's object store, fetched once per worker process. Tune unpickles
    the trainable on the driver for every trial it starts, so the trainable holds only this
    reference: with the context inside (every pending trial's config), that cost grew with
    the sweep, thousands of configs unpickled per trial."""

    _fetched: dict[str, RunContext] = {}  # in each worker: the context of the current run

    def __init__(self, ctx: RunContext) -> None:
        import ray

        self.ref = ray.put(ctx)

    def get(self) -> RunContext:
        key = self.ref.hex()
        if key not in self._fetched:
            import ray

            self._fetched.clear()  # a reused worker keeps only the current run's
            self._fetched[key] = ray.get(self.ref)
        return self._fetched[key]


def make_trainable(fn: Callable[..., Any], ctx: Shipped) -> Callable[[dict[str, Any]], None]:
    def raysweep_trial(tune_config: dict[str, Any]) -> None:
        context = ctx.get()
        run_trial(fn, context, *context.index.lookup(tune_config))

    return raysweep_trial


def run_trial(fn: Callable[..., Any], ctx: RunContext, tid: str, config: dict[str, Any]) -> None:
    from ray import tune

    trial, meta, latest = start(ctx, tid, config, tune.report)
    seed_everything(trial.seed)
    with oomkill.watched():
        outcome = attempt(fn, config, trial, latest)
        tune.report({**outcome.metrics, META_KEY: {**meta, **outcome.info}})
        if outcome.exception is not None:
            raise outcome.exception


def start(
    ctx: RunContext,
    tid: str,
    config: dict[str, Any],
    send: Send,
    tag: dict[str, Any] | None = None,
) -> tuple[Trial, dict[str, Any], dict[str, Any]]:
    """The `Trial` of one attempt, what the driver learns of where it runs (`meta`, sent with
    its first report) and the last reported value of each metric (`latest`, filled as it
    reports). `tag` goes with every report (a bundle member's id, say)."""
    import ray

    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    node = ray.get_runtime_context().get_node_id()
    device = "cuda" if gpu_ids else "cpu"
    tag = tag or {}
    meta: dict[str, Any] = {
        **tag,
        "started_at": time.time(),
        "node": node,
        "host": socket.gethostname(),
        "gpu_ids": ",".join(gpu_ids),
        **devices.describe(device),
        **package_versions(),
    }
    saver = _artifact_saver(ctx, tid, local=node == ctx.driver_node)
    latest: dict[str, Any] = {}
    trial = Trial(tid, config, device, _reporter(meta, latest, send, tag), saver, ctx.inputs)
    return trial, meta, latest


@dataclass
class Outcome:
    """How an attempt ended: the metrics and META_KEY info of its last report, and the
    exception it raised, if it did."""

    metrics: dict[str, Any]
    info: dict[str, Any]
    exception: Exception | None = None


def attempt(
    fn: Callable[..., Any], config: dict[str, Any], trial: Trial, latest: dict[str, Any]
) -> Outcome:
    """Run the experiment once: its final metrics, or the error."""
    try:
        devices.start(trial.device)
        final = fn(config, trial) or {}
    except Exception as exc:
        return failed(trial, exc)
    return ended(trial, latest, final, config)


def ended(trial: Trial, latest: dict[str, Any], final: Any, config: dict[str, Any]) -> Outcome:
    """The outcome of an attempt that returned `final`: checked, over the last reported values."""
    try:
        if not isinstance(final, dict):
            raise TypeError(
                f"the experiment returned {type(final).__name__}; return a dict of metrics"
            )
        final = {**latest, **check_metrics(final, config)}
    except Exception as exc:
        return failed(trial, exc)
    info = {**devices.usage(trial.device), "kind": "final", "names": list(final)}
    return Outcome(final, info)


def failed(trial: Trial, exc: Exception, text: str | None = None) -> Outcome:
    """The outcome of an attempt that raised `exc` (call inside its `except` block)."""
    info = {**devices.usage(trial.device), "kind": "error", "error": text or traceback.format_exc()}
    if isinstance(exc, StorageFull):  # the driver stops the sweep
        info["full"] = str(exc)
    return Outcome({}, info, exc)


def _reporter(
    meta: dict[str, Any], latest: dict[str, Any], send: Send, tag: dict[str, Any]
) -> Callable[[dict[str, Any]], None]:
    first = True

    def report(metrics: dict[str, Any]) -> None:
        nonlocal first
        extra = meta if first else tag  # the first step tells the driver where it runs
        first = False
        latest.update((k, v) for k, v in metrics.items() if k != "step")
        info = {**extra, "kind": "step", "names": list(metrics), "time": time.time()}
        send({**metrics, META_KEY: info})

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
