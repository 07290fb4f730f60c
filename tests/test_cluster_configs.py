"""The cluster configs in cluster/: Ray's own schema accepts the launcher configs, and each has what a
popplast search needs (GPU workers, token authentication, the Ray version popplast pins)."""

from __future__ import annotations

import os

import pytest
import ray
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name: str) -> dict:
    with open(os.path.join(ROOT, "cluster", name)) as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize("name", ["aws-gpu.yaml", "gcp-gpu.yaml"])
def test_launcher_configs_pass_rays_validation(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _load(name)
    validate_config(prepare_config(config))
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1 and gpu["min_workers"] == 0
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    for commands in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("RAY_AUTH_MODE=token" in c for c in config[commands])
    assert "~/.ray/auth_token" in config["file_mounts"]
    broken = prepare_config({**config, "avaliable_node_types": {}})  # a typo is caught by the same check
    with pytest.raises(Exception, match="avaliable_node_types"):
        validate_config(broken)


def test_kuberay_manifest_has_a_gpu_worker_group_and_token_auth():
    manifest = _load("kuberay-gpu.yaml")
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayCluster")
    spec = manifest["spec"]
    assert spec["rayVersion"] == ray.__version__  # the version constraints.txt pins
    assert spec["authOptions"] == {"mode": "token"}
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    [group] = spec["workerGroupSpecs"]
    [container] = group["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert group["minReplicas"] == 0 < group["maxReplicas"]


@pytest.mark.parametrize("name", ["aws-gpu.yaml", "gcp-gpu.yaml", "kuberay-gpu.yaml"])
def test_mlflow_and_the_dashboard_listen_on_the_loopback_only(name):
    """Neither has authentication: a config that binds them to every interface exposes the search."""
    with open(os.path.join(ROOT, "cluster", name)) as f:
        text = f.read()
    assert "0.0.0.0" not in text and "--host 127.0.0.1 --port 5000" in text
    assert "containerPort: 5000" not in text
