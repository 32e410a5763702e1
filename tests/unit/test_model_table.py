"""The app's model table (AppSettings.models): names, the default model, validation at start, and
one worker deployment per model bound by build_app (no cluster: the bound graph is inspected)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from deployments.protocol import WORKER_DEPLOYMENT, worker_deployment
from serve_app.settings import AppSettings, load_settings


def test_without_a_table_there_is_one_model_served_by_the_deployment_operators_know():
    settings = AppSettings(model_repo="org/model")
    assert settings.model_names() == ["default"] and settings.default_model_name == "default"
    assert settings.model_name() == "org/model" and settings.engine_settings().model_repo == "org/model"
    assert worker_deployment("default", "default") == WORKER_DEPLOYMENT


def test_each_entry_overrides_the_top_level_settings_and_the_default_is_chosen():
    settings = AppSettings(n_q=24, models={"big": {"model_repo": "org/big"}, "small": {"model_path": "/m/small", "n_q": 8}},
                           default_model="small")
    table = settings.model_table()
    assert (table["big"].model_repo, table["big"].n_q) == ("org/big", 24)
    assert (table["small"].n_q, settings.model_name("small"), settings.model_name()) == (8, "local/small", "local/small")
    assert [worker_deployment(m, settings.default_model_name) for m in settings.model_names()] == [
        f"{WORKER_DEPLOYMENT}_big", WORKER_DEPLOYMENT]
    assert AppSettings(models={"a": {}, "b": {}}).default_model_name == "a"  # none named: the first


@pytest.mark.parametrize("values, said", [
    ({"models": {"Big Model": {}}}, "model name 'Big Model'"),
    ({"models": {"a": {}}, "default_model": "b"}, "default_model 'b' is not one of models (a)"),
    ({"models": {"a": {"n_q": 99}}}, "model 'a': n_q:"),
    ({"models": {"a": {"no_such_setting": 1}}}, "model 'a': no_such_setting:"),
    ({"models": {"a": "kyutai/tts-1.6b-en_fr"}}, "models.a\n  Input should be a valid dictionary"),
])
def test_a_wrong_table_is_refused_at_start_naming_the_entry(values, said):
    with pytest.raises(ValidationError, match=said.replace("(", r"\(").replace(")", r"\)")):
        AppSettings(**values)


def test_relative_paths_of_entries_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"models": {"a": {"model_path": "ckpt", "voice_dirs": "v1,v2"}}}, environ={},
                             dotenv_path=None)
    entry = settings.model_table()["a"]
    assert entry.model_path == str(tmp_path / "ckpt") and entry.voice_dirs == [str(tmp_path / "v1"), str(tmp_path / "v2")]


def test_build_app_binds_one_worker_deployment_per_model(tmp_path):
    from serve_app.app import build_app

    app = build_app({"models": {"a": {"model_path": str(tmp_path / "a")}, "b": {"model_path": str(tmp_path / "b")}},
                     "default_model": "b", "outputs_dir": str(tmp_path / "out")})
    ingress = app._bound_deployment
    workers = ingress.init_args[0]
    assert ingress.name == "Ingress" and sorted(workers) == ["a", "b"]
    bound = {model: worker._bound_deployment for model, worker in workers.items()}
    assert {model: d.name for model, d in bound.items()} == {"a": f"{WORKER_DEPLOYMENT}_a", "b": WORKER_DEPLOYMENT}
    assert {model: (d.init_args[0]["model_path"], d.init_args[1]) for model, d in bound.items()} == {
        "a": (str(tmp_path / "a"), "a"), "b": (str(tmp_path / "b"), "b")}


def test_a_request_names_its_model_by_name_or_id_and_a_wrong_one_is_a_400(tmp_path):
    from serve_app.context import IngressContext
    from serve_app.errors import APIError

    settings = AppSettings(voice_repo=None, outputs_dir=str(tmp_path), default_model="small", models={
        "small": {"model_path": str(tmp_path / "small"), "max_text_chars": 10},
        "hub": {"model_repo": "kyutai/tts-1.6b-en_fr"},
        "ears": {"model_repo": "kyutai/stt-1b-en_fr"}})
    ctx = IngressContext.create(settings, {name: None for name in settings.model_names()}, "unit")
    assert [ctx.model_for(name).name for name in (None, "hub", "kyutai/tts-1.6b-en_fr", "local/small")] == [
        "small", "hub", "hub", "small"]
    assert ctx.model_for("tts-1", any_name=True).name == "small"  # OpenAI's names: the default model
    with pytest.raises(APIError) as unknown:
        ctx.model_for("tts-1")
    assert (unknown.value.status, unknown.value.code, unknown.value.param) == (400, "unknown_model", "model")
    with pytest.raises(APIError) as wrong_kind:
        ctx.model_for("ears")  # speech to text: it cannot speak
    assert (wrong_kind.value.status, wrong_kind.value.code) == (400, "wrong_model_kind")
    assert ctx.model_for("ears", speaks=False).name == "ears"
    # Each model's own limits: the small one takes 10 characters.
    from serve_app.service.speech import synthesis_request

    with pytest.raises(APIError) as too_long:
        synthesis_request(ctx, "eleven char", model="small")
    assert too_long.value.code == "text_too_long" and "limit is 10" in too_long.value.message


def test_speech_to_text_and_text_to_speech_models_share_an_app(tmp_path):
    from serve_app.app import build_app

    app = build_app({"models": {"voice": {"model_repo": "kyutai/tts-1.6b-en_fr"},
                                "ears": {"model_repo": "kyutai/stt-1b-en_fr-candle"}}, "outputs_dir": str(tmp_path)})
    workers = app._bound_deployment.init_args[0]
    assert {model: w._bound_deployment.name for model, w in workers.items()} == {
        "voice": WORKER_DEPLOYMENT, "ears": f"{WORKER_DEPLOYMENT}_ears"}
    settings = AppSettings(voice_repo=None, outputs_dir=str(tmp_path), models={
        "voice": {"model_repo": "kyutai/tts-1.6b-en_fr"}, "ears": {"model_repo": "kyutai/stt-1b-en_fr-candle"}})
    from serve_app.context import IngressContext

    ctx = IngressContext.create(settings, {name: None for name in settings.model_names()}, "unit")
    assert {m.name: (m.kind, m.speaks) for m in ctx.models.values()} == {
        "voice": ("tts-embedding-voices", True), "ears": ("stt", False)}
    assert ctx.models["ears"].voices.catalog.voice_repo is None  # it listens: no voices


def test_the_cloning_model_is_served_and_its_voices_are_its_clips(tmp_path):
    import json

    from serve_app.app import build_app
    from serve_app.context import IngressContext

    build_app({"models": {"clone": {"model_repo": "kyutai/tts-0.75b-en-public"}}, "outputs_dir": str(tmp_path)})
    folder = tmp_path / "clone"
    (folder / "voices" / "clips").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"cross_attention": False, "conditioners": {}}))
    (folder / "voices" / "clips" / "me.wav").write_bytes(b"RIFF")
    (folder / "voices" / "x.wav.1e68beda@240.safetensors").write_bytes(b"")  # a 1.6B voice: not this model's
    settings = AppSettings(voice_repo=None, outputs_dir=str(tmp_path), models={
        "clone": {"model_path": str(folder)}, "hub": {"model_repo": "kyutai/tts-0.75b-en-public"}})
    ctx = IngressContext.create(settings, {name: None for name in settings.model_names()}, "unit")
    assert {name: model.kind for name, model in ctx.models.items()} == {"clone": "tts-audio-prompt",
                                                                        "hub": "tts-audio-prompt"}
    assert [v.id for v in ctx.models["clone"].voices.catalog.list_voices()] == ["clips/me.wav"]
