"""What raysweep sets in Ray Tune: its registry of trainables read from Ray's store once per
run, not five times per trial, and its callbacks counted for Ray's usage tag without
importing MLflow and W&B (orchestrator/run/tuner.py); a grid not deep-copied for each trial
Tune makes of it (orchestrator/worker/bundles.py)."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import ray.tune.registry as tune_registry
from conftest import cli_env
from ray.tune.registry import TRAINABLE_CLASS, _global_registry, get_trainable_cls
from ray.tune.search.variant_generator import generate_variants

from orchestrator import run_sweep
from orchestrator.run.tuner import registry_in_memory
from orchestrator.worker import bundles

pytestmark = pytest.mark.usefixtures("ray_instance")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The keys Tune's registry reads from Ray's store, as it reads them."""
    seen: list[bytes] = []
    read = tune_registry._internal_kv_get

    def counted(key: bytes, *args, **kwargs):
        seen.append(key)
        return read(key, *args, **kwargs)

    monkeypatch.setattr(tune_registry, "_internal_kv_get", counted)
    return seen


def test_a_sweep_reads_its_trainable_from_rays_store_once_however_many_trials(
    tmp_path: Path, reads: list[bytes]
):
    spec = {"name": "reg", "experiment": "trivial", "grid": {"x": [1, 2, 3]}, "seeds": 4}
    result = run_sweep({**spec, "storage": str(tmp_path)}, progress=None)
    assert result.count("ok") == 12
    assert sorted(r["final"] for r in result.rows) == [5.0] * 4 + [10.0] * 4 + [15.0] * 4
    trainable = [key for key in reads if b"trainable_class" in key]
    # Before the run Tune checks the trainable once; in it, asks if it is there and reads it,
    # once each: not five reads per trial (60 here).
    assert len(trainable) == 3, trainable
    assert not {"get", "contains", "register", "unregister"} & set(vars(_global_registry))


# In a fresh process (this one may have imported them already), on this module's Ray.
TAGGED = """
    import json, sys
    import ray
    from ray._common.usage.usage_lib import get_extra_usage_tags_to_report
    from orchestrator import run_sweep
    from orchestrator.run.connection import connect

    connect(sys.argv[2])
    gcs = ray._private.worker.global_worker.gcs_client
    gcs.internal_kv_del(b"extra_usage_tag_air_callbacks", False, namespace=b"usage_stats")
    spec = {"name": "tagged", "experiment": "trivial", "grid": {"x": [1, 2]}}
    result = run_sweep({**spec, "storage": sys.argv[1]}, progress=None)
    print(json.dumps({
        "ok": result.count("ok"),
        "imported": sorted({"mlflow", "wandb"} & set(sys.modules)),
        "callbacks": json.loads(get_extra_usage_tags_to_report(gcs)["air_callbacks"]),
    }))
"""


def test_a_sweep_tags_its_callbacks_for_ray_without_importing_mlflow_or_wandb(
    tmp_path: Path, ray_instance
):
    """Tune's own count imports its MLflow and W&B integrations (over 2 s of a two-trial
    `sweep run`); ours counts the run's four callbacks as Tune counts a user's, neither imported."""
    assert importlib.util.find_spec("mlflow") and importlib.util.find_spec("wandb")
    address = ray_instance.get_runtime_context().gcs_address
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(TAGGED), str(tmp_path), address],
        env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen == {"ok": 2, "imported": [], "callbacks": {"CustomCallback": 4}}, seen


def test_a_value_registered_again_is_read_again():
    with registry_in_memory():
        tune_registry.register_trainable("raysweep-test", first)
        cls = get_trainable_cls("raysweep-test")
        assert cls._name == "first" and get_trainable_cls("raysweep-test") is cls  # remembered
        tune_registry.register_trainable("raysweep-test", second)
        assert get_trainable_cls("raysweep-test")._name == "second"
        _global_registry.unregister(TRAINABLE_CLASS, "raysweep-test")
        assert not tune_registry._has_trainable("raysweep-test")


def first(config: dict) -> None:
    pass


def second(config: dict) -> None:
    pass


def test_tune_makes_every_bundle_in_order_without_copying_the_grid_for_each():
    space = bundles.param_space([[f"t{i}"] for i in range(2000)], labelled=False)
    values = space[bundles.BUNDLE_KEY]["grid_search"]
    assert copy.deepcopy(space)[bundles.BUNDLE_KEY]["grid_search"] is values
    made = [config[bundles.BUNDLE_KEY] for _, config in generate_variants(space)]
    assert made == [f":t{i}" for i in range(2000)]
