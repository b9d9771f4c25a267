"""Trials on another node than the driver, and trials given (fractions of) a GPU.

A real two-node Ray cluster on this machine (ray.cluster_utils.Cluster): the
head, where the driver runs, has no CPU for trials, so every trial runs on the
worker node and its artifacts travel through the writer actor on the head. The
worker declares one GPU, which Ray hands out like a real one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
from conftest import write_sweep

from orchestrator import run_sweep


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes.add_node(num_cpus=2, num_gpus=1)  # a logical GPU: Ray assigns it, no CUDA needed
    ray.init(address=nodes.address)
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def test_artifacts_from_another_node_reach_storage(tmp_path: Path, cluster):
    source = """
        import numpy as np

        def experiment(config, trial):
            trial.save_artifact("values.npy", np.arange(4) * config["x"])
            trial.save_artifact("notes/where.txt", f"x={config['x']} seed={trial.seed}")
            return {"x_again": config["x"]}
    """
    spec = {"name": "far", "experiment": "far_exp:experiment", "grid": {"x": [1, 2]}, "seeds": 2}
    write_sweep(tmp_path, "far_exp", source, **spec, storage=str(tmp_path / "results"))
    result = run_sweep(tmp_path / "spec.yaml", progress=None)
    assert result.count("ok") == 4

    trials = pd.read_parquet(tmp_path / "results" / "far" / "trials")
    driver_node = ray.get_runtime_context().get_node_id()
    assert (trials["node"] != driver_node).all()  # every trial ran on the worker node
    for row in trials.itertuples():
        folder = tmp_path / "results" / "far" / "artifacts" / row.trial_id
        assert np.array_equal(np.load(folder / "values.npy"), np.arange(4) * row.x)
        assert (folder / "notes" / "where.txt").read_text() == f"x={row.x} seed={row.seed}"


def test_fractional_gpu_trials_share_the_device_and_see_cuda(tmp_path: Path, cluster):
    source = """
        import os
        import time

        def experiment(config, trial):
            time.sleep(1.5)  # long enough for two trials to hold the GPU at once
            return {"device": trial.device, "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
    """
    spec = {"name": "gpu", "experiment": "gpu_exp:experiment", "grid": {"x": [1, 2]}, "seeds": 2}
    write_sweep(
        tmp_path, "gpu_exp", source, **spec, resources={"cpu": 0.5, "gpu": 0.5},
        storage=str(tmp_path / "results"),
    )  # fmt: skip
    assert run_sweep(tmp_path / "spec.yaml", progress=None).count("ok") == 4
    trials = pd.read_parquet(tmp_path / "results" / "gpu" / "trials")
    assert (trials["device"] == "cuda").all()
    assert (trials["gpu_ids"] == "0").all() and (trials["visible"] == "0").all()
    overlap = [
        (a.trial_id, b.trial_id)
        for a in trials.itertuples()
        for b in trials.itertuples()
        if a.trial_id < b.trial_id and a.started_at < b.finished_at and b.started_at < a.finished_at
    ]
    assert overlap  # two trials held half the GPU each at the same time
