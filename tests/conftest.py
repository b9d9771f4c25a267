"""Shared fixtures. Modules that need Ray use `ray_instance`: one real local Ray per module."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


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


def write_sweep(folder: Path, module: str, source: str, **spec: object) -> Path:
    """A user's experiment module `<module>.py` and `spec.yaml` naming it, in `folder`."""
    import yaml

    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def cli_env() -> dict[str, str]:
    """Environment for `sweep` subprocesses: the repo importable, no .pyc files in tmp folders."""
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
