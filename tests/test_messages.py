"""Worker-to-driver reports (orchestrator/worker/messages.py): what a Tune result carries."""

from __future__ import annotations

import pickle

from ray.tune.utils import flatten_dict

from orchestrator.worker.messages import KEY, Report, ends_a_trial, from_result, to_result


def test_a_bundle_of_ones_report_puts_its_metrics_where_tune_looks_and_comes_back_whole():
    step = Report("step", "t1", {"step": 0, "loss": 0.5}, {"node": "n"}, time=1.0)
    result = to_result(step, top=True)
    assert result["loss"] == 0.5 and result["step"] == 0  # for searchers and schedulers
    assert from_result(pickle.loads(pickle.dumps(result))) == (step,)  # as Ray sends it
    assert set(flatten_dict(result)) == set(result)  # Tune does not take it apart


def test_a_bundles_batch_keeps_its_members_metrics_inside_and_says_when_one_ended():
    steps = [Report("step", m, {"step": 0, "draw": 1.0}, time=1.0) for m in "ab"]
    ended = Report("error", "a", error="Traceback ...")
    assert set(to_result(*steps)) == set(to_result(*steps, ended)) == {KEY}
    assert from_result(to_result(*steps, ended)) == (*steps, ended)
    assert not ends_a_trial(to_result(*steps)) and ends_a_trial(to_result(*steps, ended))
    assert ends_a_trial(to_result(Report("final", "b", {"acc": 1.0}), top=True))
    assert from_result({"done": True}) == ()  # a result of Tune's own
