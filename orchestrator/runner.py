"""Run a sweep: plan the trials still to do, run them on Ray Tune, record every attempt.

`run_sweep` is the whole public entry point; `sweep run` is a thin shell on it.
Order matters: everything that can be wrong with the input is checked before
a file is written, so a bad spec leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import shutil
import socket
import sys
import tempfile
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
from pydantic import BaseModel

from analysis.columns import FAILURE, SUCCESS, Status
from orchestrator.abort import Abort
from orchestrator.bundles import (
    BUNDLE_KEY,
    check_fusable,
    encode,
    group,
    make_bundle_trainable,
)
from orchestrator.compaction import compact_after_run, recover
from orchestrator.connection import choose, connect
from orchestrator.errors import InputError
from orchestrator.experiment import Experiment
from orchestrator.inputs import SweepInput, resolve_inputs
from orchestrator.leftovers import left_behind, next_attempts, remove_temporary
from orchestrator.params import check_spec, effective
from orchestrator.provenance import git_state
from orchestrator.registry import resolve
from orchestrator.spec import SweepSpec, load_spec
from orchestrator.store import StorageFull, SweepStore, store_at
from orchestrator.trials import CELL_KEY, TrialIndex, expand, search_space, trial_id

# Tune's own JSON/CSV/TensorBoard loggers are replaced by our Parquet sink; they
# cost about a second per trial. Our final/error reports need not carry the metric.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the old reporter honours verbose=0
# Tune snapshots every trial's state as JSON (for Tuner.restore) at least every 10 s, a
# cost that grows with the sweep (1.3 s per snapshot at 1,000 trials). A sweep resumes
# from its own tables, never through Tune: one snapshot an hour, and the last, will do.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "3600")


@dataclass
class Plan:
    """What a run will do: every trial of the spec, and which of them still need to run."""

    spec: SweepSpec
    store: SweepStore
    configs: dict[str, dict[str, Any]]  # trial id -> config; grid mode only
    done: set[str]  # trial ids with a successful row
    attempts: pd.DataFrame  # the trials table so far: trial_id, status, attempt
    source_dir: Path
    params: type[BaseModel] | None = None  # the experiment's declared parameters, if any
    fused: bool = False  # the experiment trains a bundle's members at once (fn.fused)

    @property
    def total(self) -> int:
        return len(self.configs) if self.configs else self.spec.search.num_samples or 0

    @property
    def pending(self) -> list[str]:
        """Ids of the grid trials with no successful row yet."""
        return [tid for tid in self.configs if tid not in self.done]

    @property
    def config_columns(self) -> list[str]:
        """Every key of a trial's config: the spec's, then declared defaults, then seed."""
        keys = self.spec.config_keys[:-1]  # seed comes last
        declared = list(self.params.model_fields) if self.params is not None else []
        return list(dict.fromkeys([*keys, *declared, "seed"]))

    @property
    def to_run(self) -> int:
        if self.spec.search.algorithm == "grid":
            return len(self.pending)
        return max(self.total - len(self.done), 0)

    @functools.cached_property
    def bundles(self) -> list[list[str]]:
        """The pending trials in bundles (spec `bundle:`), or one bundle each without it."""
        if self.spec.bundle is None:
            return [[tid] for tid in self.pending]
        return group({tid: self.configs[tid] for tid in self.pending}, self.spec.bundle)

    def table(self) -> pd.DataFrame:
        """One row per trial of a grid sweep: its id, whether it still runs, its bundle (a
        number, in a bundled sweep), its config."""
        bundle_of = {tid: n for n, ids in enumerate(self.bundles, 1) for tid in ids}
        rows = [
            {
                "trial_id": tid,
                "state": "done" if tid in self.done else "pending",
                **({"bundle": bundle_of.get(tid, "")} if self.spec.bundle else {}),
                **config,
            }
            for tid, config in self.configs.items()
        ]
        return pd.DataFrame(rows)


@dataclass
class SweepResult:
    """What one call of `run_sweep` did."""

    path: str
    total: int
    skipped: int  # already done before this run
    rows: list[dict[str, Any]] = field(default_factory=list)  # trial rows written by this run
    interrupted: bool = False
    aborted: str | None = None  # why the sweep stopped before its trials ended, if it did
    after_sweep: str | None = None  # what the experiment's after_sweep step returned
    after_sweep_error: str | None = None

    def count(self, status: Status | str) -> int:
        """Attempts of this run with this status (a retried trial counts once per attempt)."""
        return sum(r["status"] == status for r in self.rows)

    @property
    def failed_trials(self) -> set[str]:
        """Trials of this run whose every attempt failed."""
        succeeded = {r["trial_id"] for r in self.rows if r["status"] in SUCCESS}
        return {r["trial_id"] for r in self.rows} - succeeded

    def trials(self) -> pd.DataFrame:
        """The sweep's whole trials table, as pandas reads it."""
        return pd.read_parquet(f"{self.path}/trials")


def plan(
    spec: SweepSpec,
    source_dir: Path,
    params: type[BaseModel] | None = None,
    fused: bool = False,
) -> Plan:
    """What a run of `spec` would do. With the experiment's declared `params`, the spec is
    checked against them first and every config holds the effective values. `fused`: the
    experiment has a fused implementation, which bundles use."""
    if params is not None:
        grid = check_spec(params, spec)  # before anything is read or written
    else:
        grid = expand(spec) if spec.search.algorithm == "grid" else []
    store = SweepStore(spec.storage, spec.name)
    meta = store.read_meta()
    if meta and meta.get("experiment") != spec.experiment:
        raise InputError(
            f"{store.uri} holds a sweep of experiment {meta.get('experiment')!r}, not "
            f"{spec.experiment!r}: give this sweep another name (or --set name=...)"
        )
    previous = store.read("trials", ["trial_id", "status", "attempt"])
    done: set[str] = set()
    if len(previous):
        done = set(previous.loc[previous["status"].isin(SUCCESS), "trial_id"])
    configs = {trial_id(spec.experiment, c): c for c in grid}
    return Plan(spec, store, configs, done, previous, source_dir, params, fused)


def run_sweep(
    spec: SweepSpec | str | Path | dict[str, Any],
    *,
    overrides: list[str] = (),
    address: str | None = None,
    dry_run: bool = False,
    progress: TextIO | None = sys.stderr,
) -> SweepResult | Plan:
    """Run (or, with dry_run, only plan) a sweep; returns a SweepResult (or the Plan).

    `spec` is a SweepSpec, a path to a YAML spec, or a dict. Trials that already
    have a successful row are skipped, so calling this again resumes or extends.
    `address` joins a running Ray cluster ("auto" or "host:port"); without it, the one
    RAY_ADDRESS names, else an embedded Ray starts ("local": always), unless this
    process already initialised Ray.
    """
    source_dir = Path(spec).resolve().parent if isinstance(spec, (str, Path)) else Path.cwd()
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec, list(overrides))
    elif overrides:
        spec = load_spec(spec.model_dump(), list(overrides))
    fn = resolve(spec.experiment, [source_dir, Path.cwd()])
    if spec.search.algorithm == "optuna" and importlib.util.find_spec("optuna") is None:
        raise InputError("search optuna needs optuna: pip install 'raysweep[optuna]'")
    the_plan = plan(spec, source_dir, fn.params, fn.fused is not None)
    if spec.bundle is not None:
        check_fusable(fn, the_plan.bundles, the_plan.configs)
    the_plan.store.check_writable()
    inputs = resolve_inputs(spec.inputs)
    if dry_run:
        return the_plan
    result = SweepResult(the_plan.store.uri, the_plan.total, the_plan.total - the_plan.to_run)
    if the_plan.to_run == 0:
        return result
    address, joining = choose(address)
    if joining and progress is not None:
        progress.write(joining + "\n")
    started_ray = connect(address, wait=spec.limits.start_time)
    try:
        _check_resources(spec)
        return _execute(the_plan, fn, inputs, address, progress, result)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _check_resources(spec: SweepSpec) -> None:
    import ray

    have = ray.cluster_resources()
    for key, name in (("gpu", "GPU"), ("cpu", "CPU")):
        asked = getattr(spec.resources, key)
        if asked > have.get(name, 0):
            raise InputError(
                f"resources.{key}: each trial asks for {asked:g} {name}, but the Ray cluster has "
                f"{have.get(name, 0):g}. Lower it (--set resources.{key}=...) or add nodes"
            )


def _execute(
    the_plan: Plan,
    fn: Experiment,
    inputs: dict[str, SweepInput],
    address: str | None,
    progress: TextIO | None,
    result: SweepResult,
) -> SweepResult:
    import ray
    from ray import tune

    from orchestrator.artifacts import writer_name
    from orchestrator.limits import TrialLimits
    from orchestrator.progress import ProgressLine
    from orchestrator.signals import Interrupt, on_signals
    from orchestrator.sink import ParquetSink
    from orchestrator.stuck import StuckWorkers
    from orchestrator.trainable import RunContext, Shipped, make_trainable
    from orchestrator.tune_fixes import treat_out_of_memory_as_actor_death

    treat_out_of_memory_as_actor_death()

    spec, store = the_plan.spec, the_plan.store
    run = _record_run_start(the_plan, address)
    recover(store)  # after the run is recorded, so no compaction starts while it writes
    storage_root = store.uri.rsplit("/", 1)[0]
    pending = {tid: the_plan.configs[tid] for tid in the_plan.pending}
    index = TrialIndex(spec.experiment, pending, functools.partial(effective, the_plan.params))
    node = ray.get_runtime_context().get_node_id()
    ctx = RunContext(index, storage_root, spec.name, node, inputs, spec.retries)
    steps = store.read("metrics", ["trial_id", "attempt", "time"])  # only when trials run
    abort, limits = Abort(), TrialLimits(spec.limits)
    sink = ParquetSink(
        store,
        index,
        run,
        next_attempts(the_plan.attempts, steps),
        abort=abort,
        limits=limits,
        retries=spec.retries,
    )
    remove_temporary(store)
    store.set_aside_unreadable()
    sink.record_left_behind(left_behind(the_plan.attempts, steps), the_plan.configs)
    callbacks: list[Any] = [sink, limits, StuckWorkers(abort, spec.limits.start_time)]
    if progress is not None:
        callbacks.append(ProgressLine(spec.name, sink, the_plan.to_run, progress))
    interrupt = Interrupt()
    callbacks.append(interrupt)  # last: it may end the step
    bundled = spec.bundle is not None
    trainable = tune.with_resources(
        (make_bundle_trainable if bundled else make_trainable)(fn, Shipped(ctx)),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    scratch = tempfile.mkdtemp(prefix="raysweep-tune-")
    tuner = tune.Tuner(
        trainable,
        param_space=_param_space(the_plan),
        tune_config=_tune_config(spec, the_plan.to_run),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{run['run_id']}",
            storage_path=scratch,
            callbacks=callbacks,
            stop=abort,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=_max_failures(spec)),
        ),
    )
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.CRITICAL)  # failures are recorded in the table and counted
    try:
        with on_signals(interrupt):  # after connect(): it replaces Ray's SIGTERM handler
            tuner.fit()
    except KeyboardInterrupt:
        result.interrupted = True
        interrupt.kill_running()
    finally:
        tune_logger.setLevel(level)
        sink.flush()
        result.rows = sink.finished
        result.aborted = str(abort.reason) if abort.reason else None
        result.interrupted |= sink.ended < the_plan.to_run  # Tune ends early on SIGUSR1
        with abort.on(StorageFull):
            _record_run_end(store, run, result)
        shutil.rmtree(scratch, ignore_errors=True)
        _stop_artifact_writer(writer_name(storage_root, spec.name))
    if not result.interrupted and abort.reason is None:
        compact_after_run(store, progress)
    abort.raise_reason()
    if not result.interrupted and result.count(Status.OK):
        _after_sweep(fn, store.uri, result, progress)
    return result


def _after_sweep(fn: Experiment, sweep_uri: str, result: SweepResult, out: TextIO | None) -> None:
    """Run the experiment's `after_sweep(sweep_folder)`, if it has one (pairs of seeds, say)."""
    after = fn.after_sweep
    if after is None:
        return
    try:
        result.after_sweep = str(after(sweep_uri))
    except Exception:
        result.after_sweep_error = traceback.format_exc()
        if out is not None:
            out.write(f"after_sweep {after.__qualname__} failed:\n{result.after_sweep_error}")


def _param_space(the_plan: Plan) -> dict[str, Any]:
    from ray import tune

    spec = the_plan.spec
    if spec.bundle is not None:
        return {BUNDLE_KEY: tune.grid_search([encode(ids) for ids in the_plan.bundles])}
    if spec.search.algorithm == "grid":
        return {CELL_KEY: tune.grid_search(the_plan.pending)}
    return search_space(spec)


def _max_failures(spec: SweepSpec) -> int:
    """Tune's retries: per trial as the spec says; for a bundle, enough for each member's:
    each failed attempt of a bundle charges at least one member, but for the first death of
    its worker (orchestrator/sink.py)."""
    if spec.bundle is None:
        return spec.retries
    return spec.bundle.size * (spec.retries + 1) + 1


def _tune_config(spec: SweepSpec, to_run: int) -> Any:
    from ray import tune

    from orchestrator.fifo import FIFO

    search, scheduler = spec.search, spec.scheduler
    search_alg = None
    if search.algorithm == "optuna":
        from orchestrator.searchers import FinalMetricOptuna

        search_alg = FinalMetricOptuna(metric=search.metric, mode=search.mode)
    asha = None
    if scheduler is not None:
        asha = tune.schedulers.ASHAScheduler(
            time_attr="step",
            metric=scheduler.metric or search.metric,
            mode=scheduler.mode or search.mode or "min",
            max_t=scheduler.max_t,
            grace_period=scheduler.grace_period,
            reduction_factor=scheduler.reduction_factor,
        )
    return tune.TuneConfig(
        num_samples=1 if search.algorithm == "grid" else to_run,
        search_alg=search_alg,
        scheduler=asha or FIFO(),  # orchestrator/fifo.py: Tune's order, found faster
        max_concurrent_trials=spec.max_concurrent,
        reuse_actors=True,
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _record_run_start(the_plan: Plan, address: str | None) -> dict[str, Any]:
    spec, store = the_plan.spec, the_plan.store
    meta = store.read_meta() or {"name": spec.name, "created_at": _now(), "runs": []}
    run = {
        "sweep": spec.name,
        "run_id": uuid.uuid4().hex[:8],
        "started_at": _now(),
        "finished_at": None,
        "status": "running",
        "total": the_plan.total,
        "to_run": the_plan.to_run,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "address": address,
        **git_state(the_plan.source_dir),
    }
    meta.update(
        experiment=spec.experiment,
        spec=spec.model_dump(),
        config_columns=the_plan.config_columns,
        inputs={name: store_at(where).uri for name, where in spec.inputs.items()},
        source_dir=str(the_plan.source_dir),  # where `sweep report` finds a user's module
        updated_at=_now(),
    )
    meta["runs"].append(run)
    store.write_meta(meta)
    return run


def _record_run_end(store: SweepStore, run: dict[str, Any], result: SweepResult) -> None:
    meta = store.read_meta() or {"runs": [run]}
    for entry in meta["runs"]:
        if entry["run_id"] == run["run_id"]:
            entry.update(
                finished_at=_now(),
                status=_run_status(result),
                **{status: result.count(status) for status in (*SUCCESS, *FAILURE)},
            )
    meta["updated_at"] = _now()
    store.write_meta(meta)


def _run_status(result: SweepResult) -> str:
    if result.aborted:
        return "aborted"
    return "interrupted" if result.interrupted else "finished"


def _stop_artifact_writer(name: str) -> None:
    import ray

    with contextlib.suppress(ValueError):  # raised when no trial ran on another node
        ray.kill(ray.get_actor(name, namespace="raysweep"))
