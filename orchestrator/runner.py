"""Run a sweep: plan the trials still to do, run them on Ray Tune, record every attempt.

`run_sweep` is the whole public entry point; `sweep run` is a thin shell on it.
Order matters: everything that can be wrong with the input is checked before
a file is written, so a bad spec leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
from pydantic import BaseModel

from analysis.tables import FAILURE, SUCCESS, Status
from orchestrator import autobundle, trackers
from orchestrator.declaration import Experiment
from orchestrator.errors import InputError
from orchestrator.faults.abort import Abort
from orchestrator.objective import for_scheduler, for_searcher
from orchestrator.params import check_spec, effective
from orchestrator.registry import resolve
from orchestrator.run.connection import choose, connect
from orchestrator.searched import Searched, searched
from orchestrator.spec import Rounds, SweepSpec, load_spec
from orchestrator.store.compaction import compact_after_run, recover
from orchestrator.store.folder import RunStatus, StorageFull, SweepStore, now, store_at
from orchestrator.store.inputs import SweepInput, resolve_inputs
from orchestrator.store.leftovers import left_behind, next_attempts, remove_temporary
from orchestrator.trials import TrialIndex, expand, trial_id
from orchestrator.worker.bundles import check_fusable, check_search, group
from orchestrator.worker.provenance import git_state


@dataclass
class Plan:
    """What a run will do: every trial of the spec, and which of them still need to run."""

    spec: SweepSpec
    store: SweepStore
    configs: dict[str, dict[str, Any]]  # trial id -> config; grid mode only
    done: set[str]  # trial ids with a successful row
    attempts: pd.DataFrame  # the trials table so far: trial_id, status, attempt (all, searching)
    source_dir: Path
    params: type[BaseModel] | None = None  # the experiment's declared parameters, if any
    fused: bool = False  # the experiment declares a fused implementation (a bundle at once)
    auto: dict[str, Any] | None = None  # bundle size auto: the choice (orchestrator/autobundle.py)

    @property
    def searching(self) -> bool:
        """A searcher samples the configs (random or Optuna), each run with every seed."""
        return self.spec.search.algorithm != "grid"

    @property
    def total(self) -> int:
        """Trials in all: a grid's, or each config a searcher samples times the seeds."""
        if self.searching:
            return (self.spec.search.num_samples or 0) * len(self.spec.seed_list)
        return len(self.configs)

    @property
    def pending(self) -> list[str]:
        """Ids of the grid trials with no successful row yet."""
        return [tid for tid in self.configs if tid not in self.done]

    @property
    def pending_configs(self) -> dict[str, dict[str, Any]]:
        """The pending grid trials' configs, by id."""
        return {tid: self.configs[tid] for tid in self.pending}

    @property
    def config_columns(self) -> list[str]:
        """Every key of a trial's config: the spec's, then declared defaults, then seed."""
        keys = self.spec.config_keys[:-1]  # seed comes last
        declared = list(self.params.model_fields) if self.params is not None else []
        return list(dict.fromkeys([*keys, *declared, "seed"]))

    @property
    def to_run(self) -> int:
        """Trials this run runs."""
        return self.searched.trials if self.searching else len(self.pending)

    @functools.cached_property
    def searched(self) -> Searched:
        """A search sweep's configs so far: what the searcher samples and knows."""
        return searched(self.spec, self.attempts, self.index, for_searcher(self.spec))

    @property
    def bundle_size(self) -> int | None:
        """The most trials in a bundle: the spec's size, or the one chosen for auto (None:
        not chosen yet)."""
        size = self.spec.bundle.size if self.spec.bundle is not None else None
        return (self.auto or {}).get("size") if size == "auto" else size

    @functools.cached_property
    def bundles(self) -> list[list[str]]:
        """The pending trials in bundles (spec `bundle:`), or one bundle each without it; at
        their largest while an auto size is not chosen."""
        return group(self.pending_configs, self.spec.bundle, self.bundle_size)

    @functools.cached_property
    def index(self) -> TrialIndex:
        """The configs of the trials this run may run, as the trials and the ledger see them."""
        complete = functools.partial(effective, self.params)
        seeds, done = tuple(self.spec.seed_list), frozenset(self.done if self.searching else ())
        return TrialIndex(self.spec.experiment, self.pending_configs, complete, seeds, done)

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
    told: dict[str, float] = field(default_factory=dict)  # search: config_id -> searcher's value
    decisions: list[str] = field(default_factory=list)  # seeds added until decided: the end
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
    configs = grid_configs(spec, params)  # checked before anything is read or written
    store = SweepStore(spec.storage, spec.name)
    meta = store.read_meta()
    if meta and meta.get("experiment") != spec.experiment:
        raise InputError(
            f"{store.uri} holds a sweep of experiment {meta.get('experiment')!r}, not "
            f"{spec.experiment!r}: give this sweep another name (or --set name=...)"
        )
    previous, done = _history(store, whole=spec.search.algorithm != "grid")
    auto = autobundle.recorded(meta, spec)
    return Plan(spec, store, configs, done, previous, source_dir, params, fused, auto)


def grid_configs(
    spec: SweepSpec, params: type[BaseModel] | None = None
) -> dict[str, dict[str, Any]]:
    """Trial id -> config of every grid trial of `spec` (none for a search), checked against
    the experiment's declared `params` and holding their effective values, if it has them."""
    if params is not None:
        grid = check_spec(params, spec)
    else:
        grid = expand(spec) if spec.search.algorithm == "grid" else []
    return {trial_id(spec.experiment, c): c for c in grid}


def _trials_table(store: SweepStore) -> pd.DataFrame:
    return _history(store, whole=True)[0]


def _history(store: SweepStore, whole: bool = False) -> tuple[pd.DataFrame, set[str]]:
    """The trials table so far (its id, status and attempt columns, or `whole`), and the
    ids of the trials with a successful row."""
    columns = ["trial_id", "status", "attempt"]
    previous = store.read("trials", None if whole else columns)
    if not len(previous):
        return store.read("trials", columns), set()  # typed, though empty
    return previous, set(previous.loc[previous["status"].isin(SUCCESS), "trial_id"])


def run_sweep(
    spec: SweepSpec | str | Path | dict[str, Any],
    *,
    overrides: list[str] = (),
    address: str | None = None,
    dry_run: bool = False,
    progress: TextIO | None = sys.stderr,
    source_dir: Path | None = None,
    reprobe: bool = False,
) -> SweepResult | Plan:
    """Run (or, with dry_run, only plan) a sweep; returns a SweepResult (or the Plan).

    `spec` is a SweepSpec, a path to a YAML spec, or a dict. Trials that already
    have a successful row are skipped, so calling this again resumes or extends.
    `address` joins a running Ray cluster ("auto" or "host:port"); without it, the one
    RAY_ADDRESS names, else an embedded Ray starts ("local": always), unless this
    process already initialised Ray. `source_dir`: where the experiment's module is found
    and whose git state is recorded; default: the spec file's folder, else the current one.
    `reprobe`: with `bundle: {size: auto}`, choose the size again rather than reuse the one
    sweep.json records.
    """
    if source_dir is None:
        source_dir = Path(spec).resolve().parent if isinstance(spec, (str, Path)) else Path.cwd()
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec, list(overrides))
    elif overrides:
        spec = load_spec(spec.model_dump(), list(overrides))
    fn = resolve(spec.experiment, [source_dir, Path.cwd()])
    if spec.search.algorithm == "optuna" and importlib.util.find_spec("optuna") is None:
        raise InputError("search optuna needs optuna: pip install 'raysweep[optuna]'")
    trackers.check_installed(spec.log)
    the_plan = plan(spec, source_dir, fn.params, fn.fused is not None)
    if spec.bundle is not None:
        check_fusable(fn, the_plan.bundles, the_plan.configs)
    check_search(fn, spec)
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
        the_plan = autobundle.settle(the_plan, fn, inputs, reprobe, progress)
        if isinstance(spec.seeds, Rounds):
            return _execute_rounds(the_plan, fn, inputs, address, progress, result)
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


def _execute_rounds(
    the_plan: Plan,
    fn: Experiment,
    inputs: dict[str, SweepInput],
    address: str | None,
    progress: TextIO | None,
    result: SweepResult,
) -> SweepResult:
    """A sequential sweep: rounds of its trials, as orchestrator/rounds.py decides, each run
    (and recorded in sweep.json) as a run of its own; the experiment's after_sweep once."""
    from orchestrator import rounds

    store = the_plan.store

    def run_round(configs: dict[str, dict[str, Any]]) -> set[str] | None:
        previous, done = _history(store)
        part = dataclasses.replace(the_plan, configs=configs, done=done, attempts=previous)
        ran = _execute(part, fn, inputs, address, progress, SweepResult(result.path, 0, 0), False)
        result.rows += ran.rows
        result.interrupted |= ran.interrupted
        return None if ran.interrupted else ran.failed_trials

    assert isinstance(the_plan.spec.seeds, Rounds)
    read = functools.partial(_trials_table, store)
    result.decisions = rounds.run(the_plan.configs, the_plan.spec.seeds, read, run_round, progress)
    if not result.interrupted and result.count(Status.OK):
        _after_sweep(fn, store.uri, result, progress)
    return result


def _execute(
    the_plan: Plan,
    fn: Experiment,
    inputs: dict[str, SweepInput],
    address: str | None,
    progress: TextIO | None,
    result: SweepResult,
    after_sweep: bool = True,
) -> SweepResult:
    """Run the plan's trials on Ray Tune: the ledger records every attempt as it ends; then
    the experiment's after_sweep step, unless told not to."""
    from orchestrator.run.signals import Interrupt, on_signals
    from orchestrator.run.tuner import fitting, make_tuner
    from orchestrator.worker.attempt import Shipped
    from orchestrator.worker.bundles import make_trainable

    spec, store = the_plan.spec, the_plan.store
    run = _run_entry(the_plan, address)
    store.begin_run(run, _sweep_entry(the_plan))
    recover(store)  # after the run is recorded, so no compaction starts while it writes
    abort, interrupt = Abort(), Interrupt()
    ledger, callbacks = _callbacks(the_plan, run, abort, progress)
    callbacks.append(interrupt)  # last: it may end the step
    trainable = make_trainable(fn, Shipped(_context(the_plan, inputs, run)))
    scratch = tempfile.mkdtemp(prefix="raysweep-tune-")
    tuner = make_tuner(
        spec,
        trainable,
        grid=the_plan.bundles,
        searched=the_plan.searched,
        name=f"{spec.name}-{run['run_id']}",
        scratch=scratch,
        callbacks=callbacks,
        stopper=abort,
    )
    try:
        # after connect(): it replaces Ray's SIGTERM handler
        with on_signals(interrupt), fitting():
            tuner.fit()
    except KeyboardInterrupt:
        result.interrupted = True
        interrupt.kill_running()
    finally:
        ledger.writer.flush()
        result.rows = ledger.writer.written
        result.told = ledger.told
        result.aborted = str(abort.reason) if abort.reason else None
        result.interrupted |= _cut_short(the_plan, ledger)
        with abort.on(StorageFull):
            store.end_run(run, status=_run_status(result), **_counts(result))
        shutil.rmtree(scratch, ignore_errors=True)
        _stop_artifact_writer(store, spec.name)
    if not result.interrupted and abort.reason is None:
        compact_after_run(store, progress)
    abort.raise_reason()
    if after_sweep and not result.interrupted and result.count(Status.OK):
        _after_sweep(fn, store.uri, result, progress)
    return result


def _cut_short(the_plan: Plan, ledger: Any) -> bool:
    """Tune ended before every trial did (it ends early on SIGUSR1); in a search sweep,
    before every config it sampled did (a config sampled again may have nothing to run)."""
    if the_plan.searching:
        return ledger.configs_ended < the_plan.searched.samples
    return ledger.ended < the_plan.to_run


def _callbacks(
    the_plan: Plan, run: dict[str, Any], abort: Abort, progress: TextIO | None
) -> tuple[Any, list[Any]]:
    """The ledger, and the Tune callbacks of a run: the ledger, the limits and the watch
    for stuck workers, and a progress line. The ledger first sets right what a killed
    driver left in the tables (orchestrator/store/leftovers.py)."""
    from orchestrator.faults.limits import TrialLimits
    from orchestrator.faults.stuck import StuckWorkers
    from orchestrator.run.ledger import Ledger
    from orchestrator.run.progress import ProgressLine
    from orchestrator.store.writer import TableWriter

    spec, store = the_plan.spec, the_plan.store
    steps = store.read("metrics", ["trial_id", "attempt", "time"])  # only when trials run
    limits = TrialLimits(spec.limits)
    attempts = next_attempts(the_plan.attempts, steps)
    ledger = Ledger(
        the_plan.index,
        TableWriter(store, abort),
        run,
        attempts,
        spec.retries,
        limits,
        for_searcher(spec),
        the_plan.searched.values,
    )
    remove_temporary(store)
    store.set_aside_unreadable()
    ledger.record_left_behind(left_behind(the_plan.attempts, steps), the_plan.configs)
    callbacks: list[Any] = [ledger, limits, StuckWorkers(abort, spec.limits.start_time)]
    if progress is not None:
        callbacks.append(ProgressLine(spec.name, ledger, the_plan.to_run, progress))
    return ledger, callbacks


def _context(the_plan: Plan, inputs: dict[str, SweepInput], run: dict[str, Any]) -> Any:
    """What every trial of the run needs to know (orchestrator/worker/attempt.py)."""
    import ray

    from orchestrator.worker.attempt import RunContext

    spec, store = the_plan.spec, the_plan.store
    driver = ray.get_runtime_context().get_node_id()
    return RunContext(
        the_plan.index,
        store.root,
        spec.name,
        driver,
        inputs,
        spec.retries,
        for_scheduler(spec),
        _logging(spec, store.root, run),
    )


def _logging(spec: SweepSpec, storage: str, run: dict[str, Any]) -> trackers.Logging:
    """The run's trackers, ready on the driver; one that failed here already is said and
    left out."""
    names = [k for keys in spec.grid_keys().values() for k in keys] + ["seed"]
    provenance = {k: run[k] for k in ("run_id", "git_commit", "git_dirty")}
    logging, failed = trackers.prepare(
        spec.log, spec.name, spec.experiment, storage, names, provenance
    )
    for tracker, failure in failed.items():
        trackers.say(tracker, failure)
    return logging


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


def _run_entry(the_plan: Plan, address: str | None) -> dict[str, Any]:
    """This run, as sweep.json's list of runs holds it."""
    return {
        "sweep": the_plan.spec.name,
        "run_id": uuid.uuid4().hex[:8],
        "started_at": now(),
        "finished_at": None,
        "status": RunStatus.RUNNING,
        "total": the_plan.total,
        "to_run": the_plan.to_run,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "address": address,
        **git_state(the_plan.source_dir),
        **({"search": _search_entry(the_plan.searched)} if the_plan.searching else {}),
    }


def _search_entry(searched: Searched) -> dict[str, int]:
    """What a search sweep's run samples: configs, of which those sampled before that lack
    seeds, and the finished configs its searcher was told of before it sampled."""
    return {
        "configs": searched.samples,
        "lacking_seeds": len(searched.unfinished),
        "known": len(searched.finished),
    }


def _sweep_entry(the_plan: Plan) -> dict[str, Any]:
    """What sweep.json says of the sweep, as of this run."""
    spec = the_plan.spec
    return {
        "experiment": spec.experiment,
        "spec": spec.model_dump(),
        "config_columns": the_plan.config_columns,
        "inputs": {name: store_at(where).uri for name, where in spec.inputs.items()},
        "source_dir": str(the_plan.source_dir),  # where `sweep report` finds a user's module
        **({"auto_bundle": the_plan.auto} if the_plan.auto else {}),
    }


def _counts(result: SweepResult) -> dict[str, int]:
    return {status: result.count(status) for status in (*SUCCESS, *FAILURE)}


def _run_status(result: SweepResult) -> RunStatus:
    if result.aborted:
        return RunStatus.ABORTED
    return RunStatus.INTERRUPTED if result.interrupted else RunStatus.FINISHED


def _stop_artifact_writer(store: SweepStore, sweep: str) -> None:
    import ray

    from orchestrator.store.artifacts import writer_name

    name = writer_name(store.root, sweep)
    with contextlib.suppress(ValueError):  # raised when no trial ran on another node
        ray.kill(ray.get_actor(name, namespace="raysweep"))
