"""Trials on another node than the driver, and trials given (fractions of) GPUs.

A real three-node Ray cluster on this machine (ray.cluster_utils.Cluster): the
head, where the driver runs, has no CPU for trials, so every trial runs on a
worker node and its artifacts travel through the writer actor on the head. The
workers declare one and two GPUs, which Ray hands out like real ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
import torch
from conftest import overlapping, write_sweep

from orchestrator import run_sweep


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the session's local Ray, if an earlier module started it here
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes.add_node(num_cpus=2, num_gpus=1)  # logical GPUs: Ray assigns them, no CUDA needed
    nodes.add_node(num_cpus=2, num_gpus=2)
    ray.init(address=nodes.address)
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def test_artifacts_and_tensorboard_events_from_another_node_reach_storage(tmp_path: Path, cluster):
    """Every trial runs on a worker node; its artifacts and its TensorBoard event folder
    reach the local storage folder through the writer on the driver's node. The events
    are written on the trial's own disk and put there when the attempt ends: the sweep's
    folder has none of a trial while it runs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    source = """
        import os

        import numpy as np

        def experiment(config, trial):
            trial.save_artifact("values.npy", np.arange(4) * config["x"])
            trial.save_artifact("notes/where.txt", f"x={config['x']} seed={trial.seed}")
            for step in range(3):
                trial.report(step=step, value=config["x"] * step)
            there = os.path.isdir(os.path.join(config["events"], trial.id))
            return {"x_again": config["x"], "there_while_running": float(there)}
    """
    sweep = tmp_path / "results" / "far"
    spec = {"name": "far", "experiment": "far_exp:experiment", "grid": {"x": [1, 2]},
            "seeds": 2, "params": {"events": str(sweep / "tensorboard")},
            "log": ["tensorboard"], "storage": str(tmp_path / "results")}  # fmt: skip
    write_sweep(tmp_path, "far_exp", source, **spec)
    assert run_sweep(tmp_path / "spec.yaml", progress=None).count("ok") == 4

    trials = pd.read_parquet(sweep / "trials")
    driver_node = ray.get_runtime_context().get_node_id()
    assert (trials["node"] != driver_node).all()  # every trial ran on a worker node
    assert (trials["there_while_running"] == 0).all()
    for row in trials.itertuples():
        folder = sweep / "artifacts" / row.trial_id
        assert np.array_equal(np.load(folder / "values.npy"), np.arange(4) * row.x)
        assert (folder / "notes" / "where.txt").read_text() == f"x={row.x} seed={row.seed}"
        events = EventAccumulator(str(sweep / "tensorboard" / row.trial_id))
        events.Reload()
        got = [(e.step, e.value) for e in events.Scalars("value")]
        assert got == [(0, 0), (1, row.x), (2, 2 * row.x)]
        assert [e.value for e in events.Scalars("final/x_again")] == [row.x]


# Experiment code: a trial waits (30 s at most) until `n` trials have come to the folder
# `config["meet"]`, however slowly a loaded machine starts them, then runs half a second.
MEET = """
    import os
    import time
    from pathlib import Path


    def meet(config, trial, n):
        folder = Path(config["meet"])
        (folder / trial.id).touch()
        deadline = time.monotonic() + 30
        while len(os.listdir(folder)) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
"""


def test_fractional_gpu_trials_share_the_device_and_see_cuda(tmp_path: Path, cluster):
    # All four meet: four trials on three GPUs, so two surely hold one GPU at once if the
    # resources let them (with only two or three at once, each may have its own).
    source = (
        MEET
        + """
    def experiment(config, trial):
        meet(config, trial, 4)
        return {"seen": trial.device, "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
"""
    )
    (tmp_path / "meet").mkdir()
    spec = {"name": "gpu", "experiment": "gpu_exp:experiment", "grid": {"x": [1, 2]}, "seeds": 2,
            "params": {"meet": str(tmp_path / "meet")}}  # fmt: skip
    write_sweep(
        tmp_path, "gpu_exp", source, **spec, resources={"cpu": 0.5, "gpu": 0.5},
        storage=str(tmp_path / "results"),
    )  # fmt: skip
    assert run_sweep(tmp_path / "spec.yaml", progress=None).count("ok") == 4
    trials = pd.read_parquet(tmp_path / "results" / "gpu" / "trials")
    assert (trials["seen"] == "cuda").all() and (trials["device"] == "cuda").all()
    if not torch.cuda.is_available():  # logical GPUs: Ray hands them out, torch sees none
        assert trials["gpu_name"].isna().all()
    assert (trials["gpu_ids"] == trials["visible"]).all()  # it sees its own device only
    shared = [(a, b) for a, b in overlapping(trials) if a.gpu_ids == b.gpu_ids]
    assert shared  # two trials held half of one GPU each at the same time


def test_whole_gpu_trials_see_one_device_each_none_held_twice(tmp_path: Path, cluster):
    # The first three meet: all three GPUs held at once, so the two-GPU node runs two.
    source = (
        MEET
        + """
    def experiment(config, trial):
        meet(config, trial, 3)
        return {"visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
"""
    )
    (tmp_path / "meet").mkdir()
    spec = {"name": "whole", "experiment": "whole_exp:experiment", "grid": {"x": [1, 2, 3]},
            "seeds": 2, "resources": {"cpu": 0.5, "gpu": 1},
            "params": {"meet": str(tmp_path / "meet")}, "storage": str(tmp_path / "r")}  # fmt: skip
    write_sweep(tmp_path, "whole_exp", source, **spec)
    assert run_sweep(tmp_path / "spec.yaml", progress=None).count("ok") == 6
    trials = pd.read_parquet(tmp_path / "r" / "whole" / "trials")
    assert (trials["gpu_ids"] == trials["visible"]).all()
    assert trials["visible"].str.fullmatch(r"\d").all()  # one device, not a list
    gpus = {n["NodeID"]: n["Resources"].get("GPU", 0) for n in ray.nodes() if n["Alive"]}
    assert all(gpus[node] >= 1 for node in trials["node"])  # only where GPUs are
    for a, b in overlapping(trials):  # at the same time on one node: different devices
        assert a.gpu_ids != b.gpu_ids
    assert trials.groupby("node")["gpu_ids"].nunique().max() == 2  # both of the 2-GPU node
