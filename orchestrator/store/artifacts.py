"""Artifacts: files a trial saves (predictions, checkpoints) into the sweep's storage;
TensorBoard's event files take the same way.

A trial on the driver's node, or any trial when storage is a bucket, writes
directly. A trial on another node hands the bytes to a small writer actor pinned
to the driver's node, so a local storage folder receives files from every
node without a shared file system.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.store.folder import SweepStore, artifact_file


def encode(obj: Any) -> bytes:
    """The bytes saved for an object: see `Trial.save_artifact`."""
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, str):
        return obj.encode()
    if isinstance(obj, Path):
        return obj.read_bytes()
    buffer = io.BytesIO()
    if type(obj).__module__ == "numpy":
        import numpy as np

        np.save(buffer, obj, allow_pickle=False)
    else:
        import torch

        torch.save(obj, buffer)
    return buffer.getvalue()


def check_name(name: str) -> str:
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or ".." in parts or name.startswith("."):
        raise ValueError(f"artifact name {name!r}: give a relative file name like 'preds.npy'")
    return name


class ArtifactWriter:
    """Writes files into one sweep's folder; also runs as a Ray actor on the driver's node."""

    def __init__(self, storage: str, sweep: str) -> None:
        self.store = SweepStore(storage, sweep)

    def write(self, trial_id: str, name: str, data: bytes) -> str:
        """A trial's artifact `name`; returns where it went."""
        return self.put(artifact_file(trial_id, check_name(name)), data)

    def put(self, relative: str, data: bytes) -> str:
        """A file at `relative`, a path inside the sweep's folder; returns where it went."""
        path = f"{self.store.path}/{relative}"
        self.store.write_bytes(path, data)
        return path if self.store.local else f"{self.store.uri.split('://')[0]}://{path}"


def writer_name(storage: str, sweep: str) -> str:
    return "raysweep-artifacts-" + hashlib.sha1(f"{storage}/{sweep}".encode()).hexdigest()[:12]


def remote_writer(storage: str, sweep: str, driver_node: str) -> Any:
    """The writer actor on the driver's node, started on first use, shared by all trials."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor = ray.remote(num_cpus=0)(ArtifactWriter).options(
        name=writer_name(storage, sweep),
        namespace="raysweep",
        get_if_exists=True,
        lifetime="detached",
        scheduling_strategy=NodeAffinitySchedulingStrategy(driver_node, soft=False),
    )
    return actor.remote(storage, sweep)
