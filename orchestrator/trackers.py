"""Trackers: each trial's config, steps, final metrics, status and provenance, as it runs,
in the TensorBoard, MLflow or W&B a lab already uses (`log: [tensorboard, mlflow, wandb]`).

The driver checks that the packages are installed and takes the trackers' settings from its
environment (`prepare`: `MLFLOW_*`, `WANDB_*`, relative paths made absolute, since Tune runs
trials in folders of their own), so they hold on every worker. On a worker, each attempt of
a trial is one tracker run: `watched` opens it and passes every report on its way to the
driver. The trials' tables stay the record: a tracker that fails is dropped for the rest of
the run in that worker, and its first failure rides on the report to the driver, which says
it once per tracker (orchestrator/run/ledger.py); the trial goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from orchestrator.errors import InputError, error_line
from orchestrator.worker.messages import Report, Send

TRACKERS = ("tensorboard", "mlflow", "wandb")
_SETTINGS = ("MLFLOW_", "WANDB_")  # the trackers' environment variables, taken to workers


@dataclass(frozen=True)
class Logging:
    """What the workers need to log a run's trials: shipped in its RunContext."""

    trackers: tuple[str, ...] = ()
    sweep: str = ""
    experiment: str = ""
    storage: str = ""  # TensorBoard's event folders go in the sweep's folder, `tensorboard/`
    names: tuple[str, ...] = ()  # the config keys that name a run: the grid's, and the seed
    tags: dict[str, str] = field(default_factory=dict)  # the run's provenance
    env: dict[str, str] = field(default_factory=dict)  # the trackers' settings on the driver
    mlflow_experiment: str | None = None  # its id, made or found by the driver


def check_installed(trackers: list[str]) -> None:
    """Bad input (exit 2, before anything runs) if a tracker's package is missing."""
    for name in trackers:
        if importlib.util.find_spec(name) is None:  # each tracker's module has its name
            raise InputError(
                f"log: {name} needs its package; install it with pip install 'raysweep[{name}]'"
            )


def prepare(
    trackers: list[str], sweep: str, experiment: str, storage: str, names: list[str], tags: dict
) -> tuple[Logging, dict[str, str]]:
    """The run's Logging, and what failed on the driver already (an MLflow server that does
    not answer, say), by tracker: those are left out of the run."""
    env = {k: v for k, v in os.environ.items() if k.startswith(_SETTINGS)}
    if "wandb" in trackers:  # W&B's default, ./wandb, where `sweep` runs, not where Tune does
        env["WANDB_DIR"] = str(Path(env.get("WANDB_DIR", ".")).resolve())
    logging = Logging(
        tuple(trackers),
        sweep,
        experiment,
        storage,
        tuple(names),
        {k: str(v) for k, v in tags.items() if v is not None},
        env,
    )
    if "mlflow" not in trackers:
        return logging, {}
    try:
        uri = absolute_uri(_mlflow_uri())
        env["MLFLOW_TRACKING_URI"] = uri
        return dataclasses.replace(logging, mlflow_experiment=_mlflow_experiment(uri, sweep)), {}
    except Exception as exc:
        rest = tuple(t for t in trackers if t != "mlflow")
        return dataclasses.replace(logging, trackers=rest), {"mlflow": _first_line(exc)}


def say(tracker: str, failure: str, out: TextIO | None = None) -> None:
    """One line on stderr: a tracker failed, and the sweep goes on without it."""
    print(
        f"warning: log: {tracker} failed ({failure}); the sweep goes on without it "
        "and its tables are complete",
        file=out or sys.stderr,
        flush=True,
    )


def absolute_uri(uri: str) -> str:
    """A tracking URI with a relative path (`mlruns`, `file:mlruns`, `sqlite:///m.db`) made
    absolute, as the driver's folder has it; others as they are."""
    if uri == "databricks" or (":" in uri and not uri.startswith(("file:", "sqlite:///"))):
        return uri
    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///")
        return uri if path.startswith("/") else f"sqlite:///{Path(path).resolve()}"
    path = uri.removeprefix("file:")
    return uri if path.startswith("//") else Path(path).resolve().as_uri()


def watched(
    logging: Logging,
    trial_id: str,
    config: dict[str, Any],
    send: Send,
    put: Callable[[str, bytes], str] | None = None,
) -> Send:
    """`send`, with each report also logged to the run's trackers: one tracker run for this
    attempt of the trial, opened now, ended by its last report. `put(path, data)` writes a
    file into the sweep's folder from where the trial runs; None: the folder is here."""
    if not logging.trackers:
        return send
    os.environ.update(logging.env)
    run = _TrialRun(logging, trial_id, config, put)
    opened, notices = {}, {}
    for name in logging.trackers:
        if (run.key, name) in _failed:
            continue
        try:
            opened[name] = _KINDS[name](run)
        except Exception as exc:
            notices[name] = _dropped(run, name, exc)

    def forward(report: Report) -> None:
        for name, tracker in list(opened.items()):
            try:
                _log(tracker, report)
            except Exception as exc:
                del opened[name]
                notices[name] = _dropped(run, name, exc)
        if report.kind == "step":
            run.step(report)
        if notices:
            report = dataclasses.replace(report, notices={**notices})
            notices.clear()
        send(report)

    return forward


_failed: set[tuple[str, str]] = set()  # in a worker: (run, tracker) failed, not tried again


def _dropped(run: _TrialRun, name: str, exc: Exception) -> str:
    _failed.add((run.key, name))
    return _first_line(exc)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _log(tracker: Any, report: Report) -> None:
    if report.kind == "step":
        step = int(report.metrics["step"])
        tracker.step(step, _numbers(report.metrics), report.time or time.time())
    else:
        tracker.end(report)


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


class _TrialRun:
    """One attempt of a trial, as every tracker names and tags it."""

    def __init__(
        self,
        logging: Logging,
        trial_id: str,
        config: dict[str, Any],
        put: Callable[[str, bytes], str] | None,
    ) -> None:
        from orchestrator.trials import config_id

        self.logging = logging
        self.put = put
        self.trial_id = trial_id
        self.config = config
        self.config_id = config_id(logging.experiment, config)
        named = [f"{k}={config[k]}" for k in logging.names if k in config]
        self.name = " ".join(named) or trial_id
        self.tags = {
            "sweep": logging.sweep,
            "experiment": logging.experiment,
            "trial_id": trial_id,
            "config_id": self.config_id,
            **logging.tags,
        }
        self.key = f"{logging.sweep}/{logging.tags.get('run_id')}"
        self.last_step = 0
        self.reported: dict[str, float] = {}  # each metric's last reported value

    def step(self, report: Report) -> None:
        """A step all trackers were told of."""
        self.last_step = int(report.metrics["step"])
        self.reported.update(_numbers(report.metrics))

    def final(self, report: Report) -> dict[str, float]:
        """The final metrics not reported with that value at the last step."""
        final = _numbers(report.metrics)
        return {k: v for k, v in final.items() if self.reported.get(k) != v}

    def ended(self, report: Report) -> dict[str, str]:
        """What the last report says of the attempt: its status, where it ran, the error."""
        status = {"status": "ok" if report.kind == "final" else "failed"}
        error = {"error": error_line(report.error)} if report.error else {}
        where = {k: str(v) for k, v in report.columns.items() if v is not None and v != ""}
        return {**status, **error, **where}


class _TensorBoard:
    """One event folder per trial: `<sweep folder>/tensorboard/<trial id>/`, written as the
    trial runs; a trial on another node than the driver's, or with a bucket as storage,
    writes it here and puts it there when the attempt ends."""

    def __init__(self, run: _TrialRun) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from orchestrator.store.folder import SweepStore

        self.run = run
        if run.put is None:  # the sweep's folder is here
            root = SweepStore(run.logging.storage, run.logging.sweep).path + "/tensorboard"
        else:
            root = tempfile.mkdtemp()
        self.folder = f"{root}/{run.trial_id}"
        self.writer = SummaryWriter(self.folder, flush_secs=10)
        self.writer.add_text("config", _table({**run.tags, **run.config}))

    def step(self, step: int, values: dict[str, float], when: float) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step, walltime=when)

    def end(self, report: Report) -> None:
        for key, value in self.run.final(report).items():
            self.writer.add_scalar(f"final/{key}", value, self.run.last_step)
        self.writer.add_text("ended", _table(self.run.ended(report)))
        self.writer.close()
        if self.run.put is not None:
            for file in sorted(Path(self.folder).rglob("*")):
                if file.is_file():
                    relative = file.relative_to(self.folder).as_posix()
                    self.run.put(f"tensorboard/{self.run.trial_id}/{relative}", file.read_bytes())
            shutil.rmtree(Path(self.folder).parent, ignore_errors=True)  # mkdtemp's, put


class _MLflow:
    """A run per attempt in the sweep's experiment (`MLFLOW_EXPERIMENT_NAME`, else the
    sweep's name), tagged `raysweep.sweep` and `raysweep.config_id`: the config as params,
    each step's metrics, the final ones, the status."""

    def __init__(self, run: _TrialRun) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.run = run
        self.client = MlflowClient(run.logging.env["MLFLOW_TRACKING_URI"])
        tags = {f"raysweep.{k}": v for k, v in run.tags.items()}
        experiment = run.logging.mlflow_experiment
        self.id = self.client.create_run(experiment, tags=tags, run_name=run.name).info.run_id
        params = [Param(k, str(v)) for k, v in run.config.items()]
        self.client.log_batch(self.id, params=params)

    def step(self, step: int, values: dict[str, float], when: float) -> None:
        self._metrics(values, step, when)

    def end(self, report: Report) -> None:
        from mlflow.entities import RunTag

        self._metrics(self.run.final(report), self.run.last_step, time.time())
        ended = self.run.ended(report).items()
        self.client.log_batch(self.id, tags=[RunTag(f"raysweep.{k}", v) for k, v in ended])
        self.client.set_terminated(self.id, "FINISHED" if report.kind == "final" else "FAILED")

    def _metrics(self, values: dict[str, float], step: int, when: float) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(k, v, int(when * 1000), step) for k, v in values.items()]
        self.client.log_batch(self.id, metrics=metrics)


class _WandB:
    """A run per attempt in `WANDB_PROJECT` (else `raysweep`): `group` the sweep, `job_type`
    the config's id; the config, each step's metrics, the final ones in its summary.
    `WANDB_MODE` and `WANDB_DIR` hold as W&B reads them."""

    def __init__(self, run: _TrialRun) -> None:
        import wandb

        self.run = run
        self.wandb_run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or "raysweep",
            group=run.logging.sweep,
            job_type=run.config_id,
            name=run.name,
            config={**run.config, "raysweep": run.tags},
            tags=[run.logging.sweep[:64], run.config_id],
            reinit="create_new",  # fused members: a run each, at once
            settings=wandb.Settings(
                console="off", silent=True, x_disable_stats=True, disable_git=True
            ),  # the tags hold the code's git state; Tune runs trials outside the repo
        )
        _WandB.running += 1

    def step(self, step: int, values: dict[str, float], when: float) -> None:
        self.wandb_run.log(values, step=step)

    def end(self, report: Report) -> None:
        self.wandb_run.summary.update({**_numbers(report.metrics), **self.run.ended(report)})
        self.wandb_run.finish(exit_code=0 if report.kind == "final" else 1)
        _WandB.running -= 1
        if not _WandB.running:
            _WandB.teardown()

    running = 0  # in this worker: runs not finished (fused members run at once)

    @staticmethod
    def teardown() -> None:
        """Stop W&B's service process once no run is left. Left to W&B's exit hook, it
        is gone by then (Ray ends a finished trial's worker with its children) and the
        hook prints a traceback for nothing lost."""
        import wandb

        with contextlib.suppress(Exception):
            wandb.teardown()


def _mlflow_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def _mlflow_experiment(uri: str, sweep: str) -> str:
    """The id of the experiment the sweep's runs go to (made if new): MLflow's first call,
    on the driver, so a server that does not answer is found before any trial runs."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or sweep
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # made meanwhile by another driver
        return client.get_experiment_by_name(name).experiment_id


def _table(values: dict[str, Any]) -> str:
    """Markdown, as TensorBoard's text tab shows it."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in values.items())
    return f"| key | value |\n|---|---|\n{rows}"


_KINDS = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _WandB}
