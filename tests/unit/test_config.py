"""Configuration: the config files parse in Serve's schema, environment/.env override the args,
and the launcher fits the deployments to the GPUs and CPUs a local cluster really has."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.serve.schema import ServeDeploySchema

from serve_app.launch import fit_to_cluster, ray_init_options, read_config
from serve_app.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
CONFIGS = [REPO / "serve_config.yaml", REPO / "configs" / "demo.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_are_valid_serve_configs_with_named_deployments(path):
    schema = ServeDeploySchema(**read_config(path))
    (app,) = schema.applications
    assert app.import_path == "serve_app.app:build_app"
    # The demo serves the cloning model beside the 1.6B-style one, each with its worker deployment.
    clone = {"TTSWorker_clone"} if path.name == "demo.yaml" else set()
    assert {d.name for d in app.deployments} == {"TTSWorker", "Ingress"} | clone
    worker = next(d for d in app.deployments if d.name == "TTSWorker")
    assert worker.ray_actor_options.num_gpus == (0.5 if clone else 1)  # the demo's two tiny models share a GPU
    assert worker.autoscaling_config["min_replicas"] == 0
    assert set(worker.user_config) == {"offload_after_s", "max_batch_size"}
    load_settings(app.args, environ={})  # the args are valid application settings


@pytest.mark.parametrize("path", CONFIGS + [REPO / "deploy" / "kuberay-rayservice.yaml"], ids=lambda p: p.name)
def test_the_longest_paced_stream_finishes_before_the_proxy_cuts_it(path):
    """A streamed answer runs at real-time playback after its lead (deployments/engine/pacing.py):
    the longest audio a request may ask for must end within Serve's request_timeout_s, with a
    minute to spare for a cold start. (Seen before the configs said so: the demo's proxy cut a
    paced 5,000-character stream at its 300 s.)"""
    import yaml

    config = read_config(path)
    if path.suffix == ".yaml" and "spec" in config:  # the RayService: its embedded Serve config
        config = yaml.safe_load(config["spec"]["serveConfigV2"])
    (app,) = config["applications"]
    settings = load_settings(app["args"], environ={}, dotenv_path=None)
    longest = max(entry.max_audio_s for entry in settings.model_table().values())
    assert config["http_options"]["request_timeout_s"] >= longest + settings.stream_lead_s + 60


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


def _deployments(config: dict) -> dict[str, dict]:
    return {d["name"]: d for d in config["applications"][0]["deployments"]}


def _reserved_cpus(config: dict) -> float:
    """CPUs reserved when every deployment runs its most replicas."""
    return sum(d["ray_actor_options"].get("num_cpus", 1)
               * d.get("autoscaling_config", {}).get("max_replicas", d.get("num_replicas", 1))
               for d in _deployments(config).values())


def test_no_gpu_cluster_runs_one_cpu_replica_with_a_warning():
    config, warnings = fit_to_cluster(read_config(REPO / "serve_config.yaml"), {"CPU": 16.0})
    worker = _deployments(config)["TTSWorker"]
    assert worker["ray_actor_options"] == {"num_gpus": 0, "num_cpus": 2}  # 16 CPUs hold 2 + 1
    assert worker["autoscaling_config"]["max_replicas"] == 1
    assert len(warnings) == 1 and "NO GPU" in warnings[0]
    ServeDeploySchema(**config)


def test_gpu_cluster_gets_one_replica_per_gpu_and_the_port_asked_for():
    config, warnings = fit_to_cluster(read_config(REPO / "configs" / "demo.yaml"), {"CPU": 8.0, "GPU": 4.0},
                                      port="8999")
    worker = _deployments(config)["TTSWorker"]
    assert worker["ray_actor_options"]["num_gpus"] == 0.5  # with TTSWorker_clone, half of each GPU
    assert worker["autoscaling_config"]["max_replicas"] == 4
    assert config["http_options"]["port"] == 8999 and not warnings
    assert Path(config["applications"][0]["args"]["model_path"]).is_absolute()
    config, _ = fit_to_cluster(read_config(REPO / "configs" / "demo.yaml"), {"CPU": 8.0, "GPU": 1.0})
    autoscaling = _deployments(config)["TTSWorker"]["autoscaling_config"]
    assert autoscaling["max_replicas"] == autoscaling["initial_replicas"] == 1
    ServeDeploySchema(**config)


def test_production_config_fits_a_two_core_machine_without_gpu():
    """`make serve` on 2 cores: 2 CPUs for the worker and 1 for the ingress never fit, and Serve
    would wait forever. Every reservation shrinks by one factor, and one line says so."""
    original = read_config(REPO / "serve_config.yaml")
    config, warnings = fit_to_cluster(original, {"CPU": 2.0})
    deployments = _deployments(config)
    assert 0 < _reserved_cpus(config) <= 2
    cpus = {name: d["ray_actor_options"]["num_cpus"] for name, d in deployments.items()}
    assert cpus["TTSWorker"] == pytest.approx(2 * cpus["Ingress"], abs=0.02)  # proportions kept
    assert deployments["Ingress"]["ray_actor_options"]["runtime_env"]  # the rest of the options stay
    (cpu_line,) = [w for w in warnings if "CPU" in w and "NO GPU" not in w]
    assert "2 CPUs" in cpu_line and "TTSWorker 2 -> 1.33" in cpu_line and "Ingress 1 -> 0.66" in cpu_line
    assert _deployments(original)["TTSWorker"]["ray_actor_options"]["num_cpus"] == 2  # a copy was fitted
    ServeDeploySchema(**config)


def test_every_replica_of_a_multi_gpu_node_fits_its_cpus():
    # 8 GPUs but 16 cores: 8 workers x 2 CPUs + the ingress's 1 = 17 would leave one GPU idle.
    config, warnings = fit_to_cluster(read_config(REPO / "serve_config.yaml"), {"CPU": 16.0, "GPU": 8.0})
    worker = _deployments(config)["TTSWorker"]
    assert worker["autoscaling_config"]["max_replicas"] == 8 and worker["ray_actor_options"]["num_gpus"] == 1
    assert _reserved_cpus(config) <= 16 and len(warnings) == 1 and "16 CPUs" in warnings[0]
    # The demo fits a 2-core machine as written: nothing to say.
    config, warnings = fit_to_cluster(read_config(REPO / "configs" / "demo.yaml"), {"CPU": 2.0})
    assert _deployments(config)["TTSWorker"]["ray_actor_options"]["num_cpus"] == 0.5
    assert _deployments(config)["Ingress"]["ray_actor_options"]["num_cpus"] == 0.25
    assert len(warnings) == 2 and all("NO GPU" in warning for warning in warnings)  # one per model

def test_ingress_replicas_are_capped_to_the_cores_left_on_a_local_cluster():
    original = _deployments(read_config(REPO / "serve_config.yaml"))["Ingress"]["autoscaling_config"]
    assert original["min_replicas"] == 1 and original["max_replicas"] > 1 and original["target_ongoing_requests"]
    # 16 cores, no GPU: one CPU worker (2 CPUs) leaves 14 for 1-CPU ingress replicas: the config's 8 fit.
    config, _ = fit_to_cluster(read_config(REPO / "serve_config.yaml"), {"CPU": 16.0})
    assert _deployments(config)["Ingress"]["autoscaling_config"]["max_replicas"] == original["max_replicas"]
    # 6 cores, 2 GPUs: 2 workers x 2 CPUs leave 2.
    config, warnings = fit_to_cluster(read_config(REPO / "serve_config.yaml"), {"CPU": 6.0, "GPU": 2.0})
    autoscaling = _deployments(config)["Ingress"]["autoscaling_config"]
    assert autoscaling["max_replicas"] == 2 and autoscaling["min_replicas"] == 1 and not warnings
    assert _reserved_cpus(config) <= 6
    # 2 cores: one ingress replica at least, its reservation shrunk with the worker's.
    config, _ = fit_to_cluster(read_config(REPO / "serve_config.yaml"), {"CPU": 2.0})
    assert _deployments(config)["Ingress"]["autoscaling_config"]["max_replicas"] == 1
    assert _reserved_cpus(config) <= 2
    ServeDeploySchema(**config)


def test_a_joined_cluster_keeps_the_config_as_written():
    """With RAY_ADDRESS the cluster's autoscaler brings the GPUs and CPUs: nothing is fitted."""
    original = read_config(REPO / "serve_config.yaml")
    config, warnings = fit_to_cluster(original, None, port=9000)
    assert not warnings and config["http_options"]["port"] == 9000
    assert _deployments(config) == _deployments(original)


@pytest.mark.parametrize("address", ["ray://head:10001", "auto", "10.0.0.5:6379"])
def test_make_serve_with_ray_address_leaves_autoscaling_to_the_cluster(address):
    """`make serve` joining an autoscaling cluster whose GPU nodes are all down (it reports no GPU
    now): no CPU fallback, no max_replicas capped to the GPUs up now, no CPU shrinking, and no
    local logical GPUs asked for."""
    environ = {"RAY_ADDRESS": address, "RAY_NUM_GPUS": "2"}
    init, fit = ray_init_options(environ)
    assert init == {"address": address} and fit is False
    original = read_config(REPO / "serve_config.yaml")
    config, warnings = fit_to_cluster(original, {"CPU": 2.0} if fit else None)
    worker = _deployments(config)["TTSWorker"]
    assert worker == _deployments(original)["TTSWorker"] and not warnings
    assert worker["ray_actor_options"]["num_gpus"] == 1
    assert worker["autoscaling_config"]["max_replicas"] == _deployments(original)["TTSWorker"]["autoscaling_config"]["max_replicas"]


@pytest.mark.parametrize("environ", [{}, {"RAY_ADDRESS": ""}, {"RAY_ADDRESS": "local", "RAY_NUM_GPUS": "2"}])
def test_make_serve_without_ray_address_starts_and_fits_a_local_cluster(environ):
    init, fit = ray_init_options(environ)
    assert init["address"] == "local" and fit is True
    assert init.get("num_gpus") == (2 if environ.get("RAY_NUM_GPUS") else None)


def test_api_keys_come_from_the_environment_and_a_file_too(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# one key per line\nfile-key-1\n\n  file-key-2  \n")
    settings = load_settings({"api_keys": ["config-key"]}, dotenv_path=None,
                             environ={"TTS_API_KEYS": "env-a, env-b,", "TTS_API_KEYS_FILE": str(keys_file)})
    assert settings.api_keys == ["config-key", "env-a", "env-b", "file-key-1", "file-key-2"]
    assert load_settings({}, environ={}, dotenv_path=None).api_keys == []


TWO_MODELS = REPO / "configs" / "two_models_one_gpu.yaml"


def test_the_two_model_example_is_a_valid_app_with_a_worker_deployment_per_model():
    from deployments.protocol import worker_deployment

    config = read_config(TWO_MODELS)
    (app,) = ServeDeploySchema(**config).applications
    settings = load_settings(app.args, environ={}, dotenv_path=None)
    names = settings.model_names()
    assert names == ["main", "hd"] and settings.default_model_name == "main"
    workers = {worker_deployment(name, settings.default_model_name): name for name in names}
    deployments = {d.name: d for d in app.deployments}
    assert set(deployments) == {*workers, "Ingress"}
    # Both halves of one GPU, each deployment scaling to zero on its own.
    assert sum(deployments[w].ray_actor_options.num_gpus for w in workers) == 1
    assert all(deployments[w].autoscaling_config["min_replicas"] == 0 for w in workers)
    assert {name: settings.engine_settings(name).n_q for name in names} == {"main": 24, "hd": 32}


def test_two_worker_deployments_share_the_gpus_of_a_local_cluster():
    # One GPU: both models' replicas on it at once (half each), one replica of each per GPU.
    config, warnings = fit_to_cluster(read_config(TWO_MODELS), {"CPU": 16.0, "GPU": 1.0})
    workers = {name: d for name, d in _deployments(config).items() if name != "Ingress"}
    assert sorted(workers) == ["TTSWorker", "TTSWorker_hd"] and not warnings
    for worker in workers.values():
        assert worker["ray_actor_options"]["num_gpus"] == 0.5
        assert worker["autoscaling_config"]["max_replicas"] == worker["autoscaling_config"]["initial_replicas"] == 1
    config, _ = fit_to_cluster(read_config(TWO_MODELS), {"CPU": 32.0, "GPU": 4.0})
    assert [d["autoscaling_config"]["max_replicas"] for n, d in _deployments(config).items() if n != "Ingress"] == [4, 4]
    ServeDeploySchema(**config)


def test_two_whole_gpu_deployments_on_one_gpu_start_in_config_order_and_say_so():
    config = read_config(TWO_MODELS)
    for deployment in config["applications"][0]["deployments"]:
        if deployment["name"] != "Ingress":
            deployment["ray_actor_options"]["num_gpus"] = 1
    fitted, warnings = fit_to_cluster(config, {"CPU": 16.0, "GPU": 1.0})
    autoscaling = {name: d["autoscaling_config"] for name, d in _deployments(fitted).items()}
    # The app must reach RUNNING: the default model's replica starts, the other is woken on demand.
    assert (autoscaling["TTSWorker"]["initial_replicas"], autoscaling["TTSWorker_hd"]["initial_replicas"]) == (1, 0)
    assert autoscaling["TTSWorker_hd"]["max_replicas"] == 1
    starts, together = warnings
    assert starts.startswith("TTSWorker_hd starts with 0 replica(s) instead of 1")
    assert "may ask for 2 GPUs together" in together and "num_gpus: 0.5" in together
    ServeDeploySchema(**fitted)


def test_two_worker_deployments_without_gpu_run_one_cpu_replica_each_within_the_cores():
    config, warnings = fit_to_cluster(read_config(TWO_MODELS), {"CPU": 2.0})
    workers = {name: d for name, d in _deployments(config).items() if name != "Ingress"}
    assert all(d["ray_actor_options"]["num_gpus"] == 0 and d["autoscaling_config"]["max_replicas"] == 1
               for d in workers.values())
    assert sum("NO GPU" in w for w in warnings) == 2 and 0 < _reserved_cpus(config) <= 2
    ServeDeploySchema(**config)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_a_worker_admits_at_most_what_its_slots_can_be(path):
    """max_ongoing_requests is the slot count, or with `auto` the largest candidate: the most rows
    the replica may choose (deployments/engine/sizing.py)."""
    (app,) = ServeDeploySchema(**read_config(path)).applications
    worker = next(d for d in app.deployments if d.name == "TTSWorker")
    slots = worker.user_config["max_batch_size"]
    if slots == "auto":
        slots = max(load_settings(app.args, environ={}).slot_candidates)
    assert worker.max_ongoing_requests == slots
