"""Configuration: the config files parse in Serve's schema, environment/.env override the args,
and the launcher fits the worker to the GPUs the cluster really has."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.serve.schema import ServeDeploySchema

from serve_app.launch import fit_to_cluster, read_config
from serve_app.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "serve_config.yaml", REPO / "configs" / "demo.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_are_valid_serve_configs_with_named_deployments(path):
    schema = ServeDeploySchema(**read_config(path))
    (app,) = schema.applications
    assert app.import_path == "serve_app.app:build_app"
    assert {d.name for d in app.deployments} == {"TTSWorker", "Ingress"}
    worker = next(d for d in app.deployments if d.name == "TTSWorker")
    assert worker.ray_actor_options.num_gpus == 1
    assert worker.autoscaling_config["min_replicas"] == 0
    assert set(worker.user_config) == {"offload_after_s", "max_batch_size"}
    load_settings(app.args, environ={})  # the args are valid application settings


def test_environment_beats_dotenv_beats_config_args(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("HF_REPO=from-dotenv/model\nVOICE_REPO=from-dotenv/voices\n")
    args = {"model_repo": "from-config/model", "voice_repo": "from-config/voices", "n_q": 16}
    settings = load_settings(args, environ={"VOICE_REPO": "from-env/voices"}, dotenv_path=str(dotenv))
    assert settings.model_repo == "from-dotenv/model"
    assert settings.voice_repo == "from-env/voices"
    assert settings.n_q == 16
    plain = load_settings(args, environ={}, dotenv_path=None)
    assert (plain.model_repo, plain.voice_repo) == ("from-config/model", "from-config/voices")


def test_hf_repo_from_environment_replaces_a_local_model_path():
    settings = load_settings({"model_path": "/somewhere", "build_test_checkpoint": "tiny"},
                             environ={"HF_REPO": "org/model"}, dotenv_path=None)
    assert settings.model_repo == "org/model" and settings.model_path is None
    assert settings.build_test_checkpoint is None


def test_unknown_or_invalid_args_are_refused():
    with pytest.raises(ValueError):
        load_settings({"n_qq": 3}, environ={}, dotenv_path=None)
    with pytest.raises(ValueError):
        load_settings({"n_q": 99}, environ={}, dotenv_path=None)


def test_no_gpu_cluster_runs_one_cpu_replica_with_a_warning(monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    config, warnings = fit_to_cluster(read_config(REPO / "serve_config.yaml"), cluster_gpus=0)
    worker = config["applications"][0]["deployments"][0]
    assert worker["ray_actor_options"]["num_gpus"] == 0
    assert worker["autoscaling_config"]["max_replicas"] == 1
    assert warnings and "NO GPU" in warnings[0]
    ServeDeploySchema(**config)


def test_gpu_cluster_gets_one_replica_per_gpu_and_port_from_environment(monkeypatch):
    monkeypatch.setenv("PORT", "8999")
    config, warnings = fit_to_cluster(read_config(REPO / "configs" / "demo.yaml"), cluster_gpus=4)
    worker = next(d for d in config["applications"][0]["deployments"] if d["name"] == "TTSWorker")
    assert worker["ray_actor_options"]["num_gpus"] == 1
    assert worker["autoscaling_config"]["max_replicas"] == 4
    config, _ = fit_to_cluster(read_config(REPO / "configs" / "demo.yaml"), cluster_gpus=1)
    autoscaling = next(d for d in config["applications"][0]["deployments"] if d["name"] == "TTSWorker")["autoscaling_config"]
    assert autoscaling["max_replicas"] == autoscaling["initial_replicas"] == 1
    ServeDeploySchema(**config)
    assert config["http_options"]["port"] == 8999 and not warnings
    assert Path(config["applications"][0]["args"]["model_path"]).is_absolute()
