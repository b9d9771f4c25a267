"""A worker node dies mid-sweep (ray.cluster_utils.Cluster.remove_node): the trials it held
are retried on the other node, the sweep finishes, and the final table equals that of a
run on a cluster that never lost a node: same configs, same results, one ok row each."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import ray
from conftest import write_sweep

from orchestrator import run_sweep

SOURCE = """
    import time
    from pathlib import Path

    import ray

    def experiment(config, trial):
        node = ray.get_runtime_context().get_node_id()  # a marker: this trial runs there
        (Path(config["markers"]) / f"{node}-{trial.id}").touch()
        for step in range(4):
            time.sleep(0.4)
            trial.report(step=step, value=config["x"] * (step + 1))
        return {"result": config["x"] * 10 + trial.seed}
"""


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the session's local Ray, if an earlier module started it here
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        nodes.add_node(num_cpus=2)
    ray.init(address=nodes.address)
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def sweep_spec(folder: Path, name: str) -> Path:
    (folder / "markers").mkdir(parents=True)
    spec = {"name": name, "experiment": "steady:experiment", "grid": {"x": [1, 2, 3, 4]},
            "seeds": 2, "retries": 2, "storage": str(folder / "results"),
            "params": {"markers": str(folder / "markers")}}  # fmt: skip
    return write_sweep(folder, "steady", SOURCE, **spec)


def final(folder: Path, name: str) -> pd.DataFrame:
    trials = pd.read_parquet(folder / "results" / name / "trials")
    ok = trials[trials["status"] == "ok"]
    assert ok["trial_id"].is_unique and trials["trial_id"].nunique() == 8
    return ok.set_index(["x", "seed"])[["result"]].sort_index()  # ids differ: `markers`


def test_a_worker_node_lost_mid_sweep_costs_retries_not_trials(tmp_path: Path, cluster):
    reference = run_sweep(sweep_spec(tmp_path / "ref", "steady"), progress=None)  # all nodes up
    assert reference.count("ok") == 8
    victim = cluster.list_all_nodes()[1]

    def kill_when_busy() -> None:  # once a trial has run on the victim for a while
        deadline = time.monotonic() + 60
        while not any((tmp_path / "hit" / "markers").glob(f"{victim.node_id}-*")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        cluster.remove_node(victim, allow_graceful=False)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    result = run_sweep(sweep_spec(tmp_path / "hit", "steady"), progress=None)
    killer.join()
    assert result.count("ok") == 8
    trials = pd.read_parquet(tmp_path / "hit" / "results" / "steady" / "trials")
    lost = trials[trials["status"] == "failed"]
    assert len(lost) >= 1  # the node died under some trials: each is one failed attempt
    # where a trial died before it told its node, the node is unknown, never another one
    assert (lost["node"] == victim.node_id).any()
    assert (lost["node"].isna() | (lost["node"] == victim.node_id)).all()
    survivors = trials[(trials["status"] == "ok") & trials["trial_id"].isin(lost["trial_id"])]
    assert (survivors["node"] != victim.node_id).all()  # retried elsewhere
    pd.testing.assert_frame_equal(
        final(tmp_path / "hit", "steady"), final(tmp_path / "ref", "steady")
    )
