"""Storage in an S3-compatible bucket: a real S3 server on loopback (moto's standalone
server, spoken to over HTTP by pyarrow in the sweep's own processes), a sweep run by the
CLI into the bucket, read back with analysis.load("s3://..."), reported, and resumed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import yaml
from conftest import sweep, write_sweep

from analysis import load

SOURCE = """
    import numpy as np

    def experiment(config, trial):
        trial.report(step=0, loss=1.0 / config["x"])
        trial.save_artifact("values.npy", np.arange(3) * config["x"])
        return {"loss": 0.5 / config["x"]}
"""


@pytest.fixture(scope="module")
def bucket():
    """A running S3 server with an empty bucket `sweeps`; the AWS_* variables point there."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}",
        scheme="http",
        access_key="test",
        secret_key="test",
        allow_bucket_creation=True,
    )
    fs.create_dir("sweeps")
    yield fs
    for key, value in saved.items():
        os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    server.stop()


def test_a_sweep_into_a_bucket_reads_back_reports_and_resumes(tmp_path: Path, bucket):
    spec = write_sweep(tmp_path, "tiny", SOURCE, name="remote", experiment="tiny:experiment",
                       grid={"x": [1, 2]}, seeds=2, storage="s3://sweeps/results")  # fmt: skip
    out = sweep("run", str(spec), "--log", "tensorboard", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "s3://sweeps/results/remote" in out.stdout
    assert not (tmp_path / "results").exists()  # nothing went to the local disk

    names = {i.path for i in bucket.get_file_info(pafs.FileSelector("sweeps", recursive=True))}
    assert "sweeps/results/remote/sweep.json" in names
    assert sum(n.startswith("sweeps/results/remote/trials/") for n in names) >= 1
    assert sum(n.endswith("/values.npy") for n in names) == 4  # every trial's artifact
    events = [n for n in names if n.startswith("sweeps/results/remote/tensorboard/")]
    assert len([n for n in events if "tfevents" in n]) == 4, events  # every trial's events

    loaded = load("s3://sweeps/results/remote")
    assert len(loaded.ok) == 4 and set(loaded.ok["x"]) == {1, 2}
    assert sorted(loaded.ok["loss"]) == [0.25, 0.25, 0.5, 0.5]
    assert len(loaded.metrics) == 4

    report = sweep("report", "s3://sweeps/results/remote", "--out", "report", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "# Sweep report: remote" in (tmp_path / "report" / "report.md").read_text()

    listing = sweep("ls", "s3://sweeps/results", cwd=tmp_path)
    assert listing.returncode == 0 and "remote" in listing.stdout, listing.stderr
    status = sweep("status", "s3://sweeps/results/remote", cwd=tmp_path)
    assert status.returncode == 0 and "4 ok" in status.stdout, status.stdout + status.stderr

    again = sweep("run", str(spec), cwd=tmp_path)
    assert again.returncode == 0 and "4 already done" in again.stdout, again.stdout


def test_a_family_step_after_the_sweep_reads_and_writes_the_bucket(tmp_path: Path, bucket):
    """The reproducibility family compares its seeds' saved predictions after the trials:
    artifacts read from the bucket, pairs written into it."""
    spec = {"name": "pairs", "experiment": "reproducibility", "seeds": 2,
            "storage": "s3://sweeps/results",
            "params": {"activation": "relu", "steps": 10, "eval_every": 10, "batch_size": 4,
                       "block_size": 16, "n_layer": 1, "n_head": 1, "n_embd": 8,
                       "eval_windows": 2}}  # fmt: skip
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = sweep("run", "spec.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "s3://sweeps/results/pairs/pairs/pairs.parquet" in out.stdout
    loaded = load("s3://sweeps/results/pairs")
    assert loaded.pairs is not None and len(loaded.pairs) == 1  # 2 seeds: one pair
    assert 0 <= loaded.pairs["pd"].iloc[0] <= 1
