"""One attempt of a trial in a worker: the pieces a bundle (orchestrator/worker/bundles.py) runs
each of its members with.

`start` builds the `Trial` context, whose reports go to the driver; `attempt` runs the
experiment function and gives its `Outcome`: the final metrics (the last reported value
of every metric, overridden by what the experiment returns) or the traceback. Everything
the driver's ledger needs travels in the reports (orchestrator/worker/messages.py).
"""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.context import Trial, check_metrics
from orchestrator.declaration import Experiment
from orchestrator.objective import Objective
from orchestrator.store.artifacts import ArtifactWriter, check_name, encode, remote_writer
from orchestrator.store.folder import StorageFull, artifact_file
from orchestrator.store.inputs import SweepInput
from orchestrator.trackers import Logging, watched
from orchestrator.trials import TrialIndex
from orchestrator.worker import devices
from orchestrator.worker.messages import Report, Send
from orchestrator.worker.provenance import package_versions


@dataclass(frozen=True)
class RunContext:
    """What every trial of one run needs to know, shipped to workers with the trainable."""

    index: TrialIndex
    storage: str
    sweep: str
    driver_node: str
    inputs: dict[str, SweepInput] = field(default_factory=dict)  # other sweeps trials read
    retries: int = 0  # the spec's retries: a bundle with a failed member fails to be retried
    per_step: Objective | None = None  # a scheduler's: a config's seeds report step by step
    logging: Logging = Logging()  # the trackers trials log to (orchestrator/trackers.py)


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


@dataclass
class Started:
    """An attempt under way: its `Trial`, what the driver learns of where it runs (`where`,
    sent with its first report and its last), the last reported value of each metric
    (`latest`, filled as it reports) and where its reports go (`send`: to the driver,
    through the run's trackers)."""

    trial: Trial
    where: dict[str, Any]
    latest: dict[str, Any]
    send: Send

    def end(self, outcome: Outcome) -> Outcome:
        """Send the attempt's last report: how it ended."""
        self.send(outcome.report(self.where, self.trial.id))
        return outcome


def start(ctx: RunContext, tid: str, config: dict[str, Any], send: Send) -> Started:
    """Begin an attempt of trial `tid`, its reports sent with `send`."""
    import ray

    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    node = ray.get_runtime_context().get_node_id()
    device = devices.choose(bool(gpu_ids))
    where: dict[str, Any] = {
        "started_at": time.time(),
        "node": node,
        "host": socket.gethostname(),
        "gpu_ids": ",".join(gpu_ids),
        **devices.describe(device),
        **package_versions(),
    }
    on_driver_node, bucket = node == ctx.driver_node, "://" in ctx.storage
    put = _putter(ctx, here=on_driver_node or bucket)

    def saver(name: str, obj: Any) -> str:
        return put(artifact_file(tid, check_name(name)), encode(obj))

    latest: dict[str, Any] = {}
    live = on_driver_node and not bucket  # the sweep's folder is on this disk
    send = watched(ctx.logging, tid, config, send, None if live else put)
    trial = Trial(tid, config, device, _reporter(where, latest, send, tid), saver, ctx.inputs)
    return Started(trial, where, latest, send)


@dataclass
class Outcome:
    """How an attempt ended: its final metrics and device usage, or the exception it raised
    and its traceback."""

    metrics: dict[str, Any]
    usage: dict[str, Any]
    exception: Exception | None = None
    error: str | None = None

    def report(self, where: dict[str, Any], trial_id: str) -> Report:
        """The attempt's last report: what `start` gave as `where`, and how it ended."""
        columns = {**where, **self.usage}
        if self.exception is None:
            return Report("final", trial_id, self.metrics, columns)
        full = str(self.exception) if isinstance(self.exception, StorageFull) else None
        return Report("error", trial_id, {}, columns, error=self.error, full=full)


def attempt(
    experiment: Experiment, config: dict[str, Any], trial: Trial, latest: dict[str, Any]
) -> Outcome:
    """Run the experiment once: its final metrics, or the error."""
    try:
        devices.start(trial.device)
        final = experiment.fn(config, trial) or {}
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
    return Outcome(final, devices.usage(trial.device))


def failed(trial: Trial, exc: Exception, text: str | None = None) -> Outcome:
    """The outcome of an attempt that raised `exc` (call inside its `except` block)."""
    return Outcome({}, devices.usage(trial.device), exc, text or traceback.format_exc())


def _reporter(
    where: dict[str, Any], latest: dict[str, Any], send: Send, trial_id: str
) -> Callable[[dict[str, Any]], None]:
    first = True

    def report(metrics: dict[str, Any]) -> None:
        nonlocal first
        columns = where if first else {}  # the first step tells the driver where it runs
        first = False
        latest.update((k, v) for k, v in metrics.items() if k != "step")
        send(Report("step", trial_id, metrics, columns, time=time.time()))

    return report


def _putter(ctx: RunContext, here: bool) -> Callable[[str, bytes], str]:
    """`put(path, data)`: a file into the sweep's folder (`path` inside it), written here
    (`here`: on the driver's node, or storage is a bucket) or by the writer actor on the
    driver's node. The writer is made on first use."""
    made: list[Any] = []

    def put(relative: str, data: bytes) -> str:
        if not made:
            made.append(
                ArtifactWriter(ctx.storage, ctx.sweep)
                if here
                else remote_writer(ctx.storage, ctx.sweep, ctx.driver_node)
            )
        if here:
            return made[0].put(relative, data)
        import ray

        return ray.get(made[0].put.remote(relative, data))

    return put
