"""The API contract, machine-checked: the ingress app in process (the real routes, guards, error
handlers and OpenAPI document over the scripted fake engine, tests/helpers/inprocess_app.py), with
the models the demo has (a 1.6B-style default, a voice-cloning one, so the document's per-model
rules are exercised, and a speech-to-text one for the transcriptions route).

Schemathesis reads the app's /openapi.json and sends every operation its examples, the coverage
phase's boundary values, missing and wrong fields and undeclared methods, then fuzzed requests
(valid and invalid), and checks every answer with its default checks: the status and its headers
are documented, the body matches its schema, a request the schema allows is taken and one it
refuses is refused, a method a path lacks is a 405 with `Allow`. On top: no 5xx, but a 503 that
says when to retry (`Retry-After`), which the document declares as a temporary refusal. A failure
prints the request that reproduces it (a curl line). The seed is fixed.

Why in process: the contract is the ingress's (the document and what the routes answer), and the
fake engine answers in microseconds, so every phase runs with more examples in seconds, where the
real tiny model on the test cluster cost ~200 s of CI for fewer. What the real model adds to a
request (its tokenizer, its audio) is tests/serve's; the two together are the by-hand run against
the demo (README, "The API contract"), and the texts no tokenizer can take are checked on the
cluster (tests/serve/test_unspeakable_text.py).

What this test decides, and why:
- Voice names are data, not shape (GET /api/voices lists each model's): a case meant to be valid
  speaks with a voice its model has (an unknown one is a 400 the document declares).
- Uploads are form data the fuzzer cannot make into audio: their refusals are what it checks
  (tests/unit/test_uploads.py and tests/serve take real clips), except a transcription meant to be
  valid, which uploads half a second of WAV (its model and language are data too: a listed one).
"""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from helpers.clips import audio_file, tone
from helpers.inprocess_app import build_app, clip_folder

SEED = 26
MAX_EXAMPLES = 25  # per operation and phase
CLIPS = ("clips/reader.wav",)
CLONE_REPO = "kyutai/tts-0.75b-en-public"
STT_REPO = "kyutai/stt-1b-en_fr"  # the fake speech-to-text engine hears for it (transcriptions)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    models = {"default": {},
              "clone": {"model_repo": CLONE_REPO, "n_q": 16,
                        "voice_dirs": [str(clip_folder(root / "clips", CLIPS))]},
              "ears": {"model_repo": STT_REPO}}
    return build_app(root, models=models)


@pytest.fixture(scope="module")
def contract(app):
    # Schemathesis's defaults, not the repository's schemathesis.toml (which lets a by-hand run take
    # an invented voice's 400): here every valid case speaks with a listed voice, and must succeed.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=SchemathesisConfig())
    schema.config.seed = SEED
    schema.config.generation.update(max_examples=MAX_EXAMPLES, database="none")
    return schema


@pytest.fixture(scope="module")
def voices_by_model(app) -> dict[str | None, list[str]]:
    """Each model's voices (by its name and its id; None: the default's), as its listing says."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        listing = {name: sorted(v["id"] for v in client.get("/api/voices", params={"model": name}).json()["voices"])
                   for name in ("default", "clone")}
    return {None: listing["default"], "default": listing["default"], "clone": listing["clone"],
            CLONE_REPO: listing["clone"]}


def meant_to_be_valid(case) -> bool:
    return isinstance(case.body, dict) and case.meta is not None and case.meta.generation.mode.is_positive


def speak_with_a_known_voice(case, voices_by_model: dict) -> None:
    """A case meant to be valid names a voice its model has (the same one for the same name)."""
    if case.operation.path not in ("/api/tts", "/v1/audio/speech") or not meant_to_be_valid(case):
        return
    body = case.body
    known = voices_by_model.get(body.get("model"), voices_by_model[None])
    voice = body.get("voice")
    if isinstance(voice, dict) and isinstance(voice.get("id"), str) and voice["id"] not in known:
        voice["id"] = known[len(voice["id"]) % len(known)]
    elif isinstance(voice, str) and voice not in known:
        body["voice"] = known[len(voice) % len(known)]


SPEECH = audio_file(tone(0.5))  # half a second of WAV: what a valid transcription request uploads


def transcribe_real_audio(case) -> None:
    """A transcription case meant to be valid uploads audio, in a language its model hears, to a
    speech-to-text model (any other name is OpenAI's, meaning the first one)."""
    if case.operation.path != "/v1/audio/transcriptions" or not meant_to_be_valid(case):
        return
    body = case.body
    body["file"] = SPEECH
    if body.get("language") not in (None, "", "en", "fr"):
        body["language"] = "en"
    if body.get("model") in ("default", "clone", CLONE_REPO):
        body["model"] = "ears"


def no_server_error_but_a_retry_after_503(ctx, response, case):
    """5xx is a bug, except a 503 carrying Retry-After: the documented "busy or unavailable, ask
    again then" (a full queue, a model that cannot load yet)."""
    status = response.status_code
    if status >= 500 and not (status == 503 and response.headers.get("retry-after")):
        raise AssertionError(f"{case.method} {case.path} answered {status}: {response.text[:300]}")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    """Schemathesis 4.32 names each operation's subtest through `Node._nodeid`, which pytest 9 no
    longer has: the node id it reads (and restores) is the public one."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("contract")


@pytest.mark.timeout(600)
@schema.parametrize()
def test_every_operation_keeps_its_contract(case, voices_by_model):
    speak_with_a_known_voice(case, voices_by_model)
    transcribe_real_audio(case)
    case.call_and_validate(excluded_checks=[not_a_server_error],
                           additional_checks=[no_server_error_but_a_retry_after_503])
