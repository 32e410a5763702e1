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
