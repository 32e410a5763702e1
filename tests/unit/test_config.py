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
    from deployments.engine.models import ModelKind, model_kind
    from deployments.protocol import worker_deployment

    schema = ServeDeploySchema(**read_config(path))
    (app,) = schema.applications
    assert app.import_path == "serve_app.app:build_app"
    settings = load_settings(app.args, environ={}, dotenv_path=None)  # valid application settings
    # A worker deployment per model: the demo's 1.6B-style, cloning and speech-to-text tiny models;
    # production's 1.6B and the STT release with voice-activity heads.
    workers = {worker_deployment(name, settings.default_model_name): name for name in settings.model_names()}
    assert {d.name for d in app.deployments} == {*workers, "Ingress"}
    kinds = [model_kind(settings.engine_settings(name)) for name in settings.model_names()]
    assert kinds.count(ModelKind.STT) == 1
    if path.name == "serve_config.yaml":
        assert settings.engine_settings("stt").model_repo == "kyutai/stt-1b-en_fr-candle"
        assert settings.engine_settings("stt").model_path is None
    else:
        assert settings.engine_settings("stt").build_test_checkpoint == "tiny-stt"  # built on first use
    for deployment in app.deployments:
        if deployment.name in workers:
            assert deployment.autoscaling_config["min_replicas"] == 0
            assert set(deployment.user_config) == {"offload_after_s", "max_batch_size"}
    gpus = [d.ray_actor_options.num_gpus for d in app.deployments if d.name in workers]
    # Production: a GPU each; the demo's three tiny models share each GPU (fractions that fill one).
    assert gpus == ([1, 1] if path.name == "serve_config.yaml" else [0.4, 0.4, 0.2])


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


def _reserved_cpus(config: dict, gpus: int = 0) -> float:
    """CPUs reserved when every deployment runs its most replicas, the workers that ask for whole
    GPUs only as many as `gpus` GPUs hold (those with the most CPUs first)."""
    cpus, on_gpus = 0.0, []
    for d in _deployments(config).values():
        most = d.get("autoscaling_config", {}).get("max_replicas", d.get("num_replicas", 1))
        each = d["ray_actor_options"].get("num_cpus", 1)
        if d["ray_actor_options"].get("num_gpus"):
            assert d["ray_actor_options"]["num_gpus"] == 1, "whole GPUs only in this count"
            on_gpus += [each] * most
        else:
            cpus += each * most
    return cpus + sum(sorted(on_gpus, reverse=True)[:gpus])


def test_no_gpu_cluster_runs_one_cpu_replica_with_a_warning():
    config, warnings = fit_to_cluster(read_config(REPO / "serve_config.yaml"), {"CPU": 16.0})
    for name in ("TTSWorker", "TTSWorker_stt"):
        worker = _deployments(config)[name]
        assert worker["ray_actor_options"] == {"num_gpus": 0, "num_cpus": 2}  # 16 CPUs hold 2 + 2 + 1
        assert worker["autoscaling_config"]["max_replicas"] == 1
    # One line for every model moved to CPU.
    assert len(warnings) == 1 and "NO GPU" in warnings[0] and "TTSWorker, TTSWorker_stt" in warnings[0]
    ServeDeploySchema(**config)


def test_gpu_cluster_gets_one_replica_per_gpu_and_the_port_asked_for():
    config, warnings = fit_to_cluster(read_config(REPO / "configs" / "demo.yaml"), {"CPU": 8.0, "GPU": 4.0},
                                      port="8999")
    worker = _deployments(config)["TTSWorker"]
    assert worker["ray_actor_options"]["num_gpus"] == 0.4  # with TTSWorker_clone and _stt, a share of each GPU
    assert worker["autoscaling_config"]["max_replicas"] == 4
    assert config["http_options"]["port"] == 8999 and not warnings
    assert Path(config["applications"][0]["args"]["model_path"]).is_absolute()
    config, _ = fit_to_cluster(read_config(REPO / "configs" / "demo.yaml"), {"CPU": 8.0, "GPU": 1.0})
    autoscaling = _deployments(config)["TTSWorker"]["autoscaling_config"]
    assert autoscaling["max_replicas"] == autoscaling["initial_replicas"] == 1
    ServeDeploySchema(**config)


def test_production_config_fits_a_two_core_machine_without_gpu():
    """`make serve` on 2 cores: 2 CPUs for each model's worker and 1 for the ingress never fit, and
    Serve would wait forever. Every reservation shrinks by one factor, and one line says so."""
    original = read_config(REPO / "serve_config.yaml")
    config, warnings = fit_to_cluster(original, {"CPU": 2.0})
    deployments = _deployments(config)
    assert 0 < _reserved_cpus(config) <= 2
    cpus = {name: d["ray_actor_options"]["num_cpus"] for name, d in deployments.items()}
    assert cpus["TTSWorker"] == cpus["TTSWorker_stt"] == pytest.approx(2 * cpus["Ingress"], abs=0.02)  # proportions kept
    assert deployments["Ingress"]["ray_actor_options"]["runtime_env"]  # the rest of the options stay
    (cpu_line,) = [w for w in warnings if "CPU" in w and "NO GPU" not in w]
    assert "2 CPUs" in cpu_line and "reserves 5" in cpu_line
    assert "TTSWorker 2 -> 0.8" in cpu_line and "TTSWorker_stt 2 -> 0.8" in cpu_line and "Ingress 1 -> 0.4" in cpu_line
    assert _deployments(original)["TTSWorker"]["ray_actor_options"]["num_cpus"] == 2  # a copy was fitted
    ServeDeploySchema(**config)


def test_every_replica_of_a_multi_gpu_node_fits_its_cpus():
    # 8 GPUs but 16 cores: 8 worker replicas (TTS and STT together: a GPU each) x 2 CPUs + the
    # ingress's 1 = 17 would leave one GPU idle. Not 8 x 2 x 2 + 1 = 33: the two models' replicas
    # never hold more than the 8 GPUs at once, and shrinking for 33 would halve every reservation.
    config, warnings = fit_to_cluster(read_config(REPO / "serve_config.yaml"), {"CPU": 16.0, "GPU": 8.0})
    for name in ("TTSWorker", "TTSWorker_stt"):
        worker = _deployments(config)[name]
        assert worker["autoscaling_config"]["max_replicas"] == 8 and worker["ray_actor_options"]["num_gpus"] == 1
    assert _reserved_cpus(config, gpus=8) <= 16
    shared, cpu_line = warnings
    assert "may ask for 16 GPUs together" in shared
    assert "16 CPUs" in cpu_line and "reserves 17" in cpu_line and "TTSWorker 2 -> 1.88" in cpu_line
    # 4 GPUs and 16 cores: 4 worker replicas x 2 + 8 ingress replicas x 1 fit as written.
    config, warnings = fit_to_cluster(read_config(REPO / "serve_config.yaml"), {"CPU": 16.0, "GPU": 4.0})
    assert _deployments(config)["Ingress"]["autoscaling_config"]["max_replicas"] == 8
    assert _deployments(config)["TTSWorker_stt"]["ray_actor_options"]["num_cpus"] == 2
    assert _reserved_cpus(config, gpus=4) == 16 and not any("CPUs" in w for w in warnings)
    # The demo fits a 2-core machine as written: only the one line that says the models run on CPU.
    config, warnings = fit_to_cluster(read_config(REPO / "configs" / "demo.yaml"), {"CPU": 2.0})
    assert _deployments(config)["TTSWorker"]["ray_actor_options"]["num_cpus"] == 0.5
    assert _deployments(config)["TTSWorker_stt"]["ray_actor_options"]["num_cpus"] == 0.5
    assert _deployments(config)["Ingress"]["ray_actor_options"]["num_cpus"] == 0.25
    (line,) = warnings
    assert "NO GPU" in line and "TTSWorker, TTSWorker_clone, TTSWorker_stt" in line

def test_ingress_replicas_are_capped_to_the_cores_left_on_a_local_cluster():
    original = _deployments(read_config(REPO / "serve_config.yaml"))["Ingress"]["autoscaling_config"]
    assert original["min_replicas"] == 1 and original["max_replicas"] > 1 and original["target_ongoing_requests"]
    # 16 cores, no GPU: one CPU worker (2 CPUs) leaves 14 for 1-CPU ingress replicas: the config's 8 fit.
    config, _ = fit_to_cluster(read_config(REPO / "serve_config.yaml"), {"CPU": 16.0})
    assert _deployments(config)["Ingress"]["autoscaling_config"]["max_replicas"] == original["max_replicas"]
    # 6 cores, 2 GPUs: 2 worker replicas (of either model) x 2 CPUs leave 2.
    config, warnings = fit_to_cluster(read_config(REPO / "serve_config.yaml"), {"CPU": 6.0, "GPU": 2.0})
    autoscaling = _deployments(config)["Ingress"]["autoscaling_config"]
    assert autoscaling["max_replicas"] == 2 and autoscaling["min_replicas"] == 1
    assert [w for w in warnings if "CPU" in w] == []  # only the GPU-sharing line
    assert _reserved_cpus(config, gpus=2) <= 6
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
    (line,) = [w for w in warnings if "NO GPU" in w]
    assert "TTSWorker, TTSWorker_hd" in line and 0 < _reserved_cpus(config) <= 2
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


DEMO = REPO / "configs" / "demo.yaml"


@pytest.mark.parametrize("gpus", [1, 2])
def test_the_demos_three_models_start_as_written_on_a_share_of_each_gpu(gpus):
    config, warnings = fit_to_cluster(read_config(DEMO), {"CPU": 8.0, "GPU": float(gpus)})
    replicas = {name: (d["autoscaling_config"]["initial_replicas"], d["autoscaling_config"]["max_replicas"])
                for name, d in _deployments(config).items() if name != "Ingress"}
    # 0.4 + 0.4 + 0.2 of each GPU: a replica of every model per GPU, the STT one warm from the start.
    assert replicas == {"TTSWorker": (gpus, gpus), "TTSWorker_clone": (0, gpus), "TTSWorker_stt": (1, gpus)}
    assert not warnings
    ServeDeploySchema(**config)


def test_starting_replicas_must_each_find_one_gpu_with_room_not_room_summed_over_gpus():
    """2 GPUs, the TTS worker at 0.6 starting 2 replicas (one on each GPU, 0.4 left on each): an
    STT replica at 0.5 finds 0.8 free in all but no GPU with 0.5, so Serve would wait for it
    forever and the app would never be RUNNING. It starts at zero instead, and a line says so."""
    config = read_config(DEMO)
    deployments = _deployments(config)
    deployments["TTSWorker"]["ray_actor_options"]["num_gpus"] = 0.6
    deployments["TTSWorker_stt"]["ray_actor_options"]["num_gpus"] = 0.5
    fitted, warnings = fit_to_cluster(config, {"CPU": 8.0, "GPU": 2.0})
    starts = {name: d["autoscaling_config"].get("initial_replicas") for name, d in _deployments(fitted).items()}
    assert (starts["TTSWorker"], starts["TTSWorker_stt"]) == (2, 0)
    assert _deployments(fitted)["TTSWorker_stt"]["autoscaling_config"]["max_replicas"] == 2
    start, together = warnings
    assert start.startswith("TTSWorker_stt starts with 0 replica(s) instead of 1")
    assert together.startswith("TTSWorker, TTSWorker_clone, TTSWorker_stt may ask for")
    # At 0.4 it fits beside either TTS replica: it starts.
    deployments["TTSWorker_stt"]["ray_actor_options"]["num_gpus"] = 0.4
    fitted, warnings = fit_to_cluster(config, {"CPU": 8.0, "GPU": 2.0})
    assert _deployments(fitted)["TTSWorker_stt"]["autoscaling_config"]["initial_replicas"] == 1
    assert not any("starts with" in w for w in warnings)
    ServeDeploySchema(**fitted)
