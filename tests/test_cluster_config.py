"""cluster.yaml and cluster-aws.yaml are configs `ray up` accepts: checked against Ray's
own schema after Ray fills in its defaults, and they install this project on every node."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO
from ray.autoscaler._private.util import prepare_config, validate_config


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-aws.yaml"])
def test_the_cluster_config_is_one_ray_up_accepts(name: str):
    config = prepare_config(yaml.safe_load((REPO / name).read_text()))
    validate_config(config)  # raises on anything `ray up` would refuse
    assert config["file_mounts"] == {"~/raysweep": "."}
    assert any("pip install" in c and "-e ." in c for c in config["setup_commands"])
    assert any("--address=$RAY_HEAD_IP" in c for c in config["worker_start_ray_commands"])


def test_the_on_premises_cluster_lists_its_machines():
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and len(config["provider"]["worker_ips"]) == 2


def test_the_cloud_cluster_has_gpu_workers_and_a_head_without_trials():
    config = yaml.safe_load((REPO / "cluster-aws.yaml").read_text())
    types = config["available_node_types"]
    assert types["gpu_worker"]["resources"]["GPU"] >= 1
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
