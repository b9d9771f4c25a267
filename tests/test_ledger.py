"""The ledger (orchestrator/run/ledger.py) fed Tune's events as Tune sends them, for the
cases a real sweep reaches only by luck of timing: which trial a dead worker is charged,
and how a Tune trial stopped with trials still running is recorded. Real Parquet files;
Tune's trials stand in as the two attributes the ledger reads (trial_id, config)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from orchestrator.faults.abort import Abort
from orchestrator.faults.failures import CUT_SHORT, NO_ERROR, UNCERTAIN
from orchestrator.run.ledger import Ledger
from orchestrator.store.folder import SweepStore
from orchestrator.store.writer import TableWriter
from orchestrator.trials import TrialIndex
from orchestrator.worker import bundles
from orchestrator.worker.messages import Report, from_result, to_result

IDS = ["a", "b", "c"]
RUN = {"sweep": "s", "run_id": "r", "git_commit": None, "git_dirty": None}


def ledger_for(tmp_path, retries: int = 0) -> Ledger:
    index = TrialIndex("exp", {tid: {"x": i, "seed": 0} for i, tid in enumerate(IDS)})
    writer = TableWriter(SweepStore(str(tmp_path), "s"), Abort())
    return Ledger(index, writer, RUN, {}, retries=retries)


def tune_trial(ids: list[str], labelled: bool) -> SimpleNamespace:
    """A Tune trial as Tune hands it out: its config from the bundles' param space."""
    space = bundles.param_space([ids], labelled=labelled)
    (config,) = [{key: grid["grid_search"][0]} for key, grid in space.items()]
    return SimpleNamespace(trial_id="T1", config=config, error_file=None)


def send(ledger: Ledger, trial: SimpleNamespace, *reports: Report) -> None:
    ledger.on_trial_result(0, [], trial, to_result(*reports, top=len(reports) == 1))


def rows(tmp_path) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / "s" / "trials").sort_values(["trial_id", "attempt"])


def step(tid: str) -> Report:
    return Report("step", tid, {"step": 0, "loss": 1.0}, {"node": "n"}, time=1.0)


def test_a_dead_worker_that_sent_each_report_at_once_charges_its_running_trial(tmp_path):
    """A bundle of one sends each report as it is made: when its worker dies, the driver
    knows which trial ran, charges it (a retry spent) and Tune runs it again."""
    ledger = ledger_for(tmp_path, retries=1)
    trial = tune_trial(["c"], labelled=False)
    send(ledger, trial, step("c"))
    ledger.on_trial_recover(0, [], trial)  # the worker died while c ran
    ledger.writer.flush()
    (row,) = rows(tmp_path).to_dict("records")
    assert (row["trial_id"], row["status"], row["attempt"]) == ("c", "failed", 1)
    assert row["error"] == NO_ERROR  # Ray's error file, when Tune has one
    assert list(bundles.bundle_of(trial.config, ledger.index).members) == ["c"]  # runs again
    assert ledger.retried == 1 and ledger.ended == 0


@pytest.mark.parametrize("left", [["b", "c"], ["c"]])
def test_a_dead_worker_that_batched_its_reports_reruns_them_one_at_a_time(tmp_path, left):
    """A larger bundle batches its reports, and the last batch dies with its worker: even
    with one trial left, whether it ran or ended is not known (its end may have died)."""
    ledger = ledger_for(tmp_path, retries=1)
    trial = tune_trial(IDS, labelled=True)
    send(ledger, trial, step("a"), Report("final", "a", {"loss": 0.5}), step("b"))
    if left == ["c"]:
        send(ledger, trial, Report("final", "b", {"loss": 0.4}), step("c"))
    ledger.on_trial_recover(0, [], trial)  # the driver cannot know what died with it
    ledger.writer.flush()
    table = rows(tmp_path).set_index("trial_id")
    seen = left[0]  # the trial seen running gets the unsure row
    assert table["status"].to_dict() == {**{t: "ok" for t in IDS if t not in left}, seen: "failed"}
    assert table.loc[seen, "error"].startswith(UNCERTAIN)
    again = bundles.bundle_of(trial.config, ledger.index)
    assert list(again.members) == left and again.sends_at_once
    assert ledger.retried == 0  # the unsure row costs no retry


@pytest.mark.parametrize("aborted", [False, True])
def test_a_bundle_of_one_stopped_while_running_is_stopped_or_cut_short(tmp_path, aborted):
    """Tune's scheduler (ASHA) stops a trial: it is done, `stopped`. The sweep aborting
    stops it: `failed`, cut short, so that the next run runs it again."""
    ledger = ledger_for(tmp_path)
    trial = tune_trial(["a"], labelled=False)
    send(ledger, trial, step("a"))
    if aborted:
        ledger.writer.abort.because(RuntimeError("the trials cannot start"))
    ledger.on_trial_complete(0, [], trial)
    ledger.writer.flush()
    (row,) = rows(tmp_path).to_dict("records")
    assert pd.isna(row["bundle"])  # a trial of an unbundled sweep
    if aborted:
        assert (row["status"], row["error"]) == ("failed", CUT_SHORT)
    else:
        assert row["status"] == "stopped" and pd.isna(row["error"])


def test_an_ended_tune_trials_last_result_keeps_its_metrics_not_the_reports(tmp_path):
    """Tune keeps each ended trial's last result and writes it as JSON into its snapshot at
    the end of the run, pickling every report inside (a bundle's last batch): the ledger
    recorded them already and drops them; the metrics stay."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    ledger = ledger_for(tmp_path)
    trial = tune_trial(["c"], labelled=False)
    trial.run_metadata = _TrainingRunMetadata()  # Tune's own record of the trial's results
    result = to_result(step("c"), Report("final", "c", {"loss": 0.5}), top=True)
    send(ledger, trial, step("c"), Report("final", "c", {"loss": 0.5}))
    trial.run_metadata.last_result = result

    def snapshot() -> dict:  # what Tune writes, read back
        return _TrainingRunMetadata.from_json_state(trial.run_metadata.get_json_state()).last_result

    assert len(from_result(snapshot())) == 2
    ledger.on_trial_complete(0, [], trial)
    assert snapshot() == {"loss": 0.5}
