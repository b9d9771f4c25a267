"""Shared fixtures. Modules that need Ray use `ray_instance`: one real local Ray per module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SWEEP = [sys.executable, "-m", "orchestrator.cli"]


@pytest.fixture(scope="module")
def ray_instance():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """An empty storage folder for one test."""
    return tmp_path / "results"


def cli_env() -> dict[str, str]:
    """Environment for `sweep` subprocesses: quiet Ray, the repo importable."""
    return {**os.environ, "PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "0"}
