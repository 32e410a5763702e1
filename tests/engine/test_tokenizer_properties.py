"""Any text through the real engine's preparation (moshi's tokenizer and state machine entries,
the tiny checkpoint, in process): every text of tests/helpers/text_strategies.py is prepared as
a job or refused with InvalidRequest naming `text`, never anything else: no text reaches the
tokenizer that it cannot take (lone surrogates are refused before it, by clean_text)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from deployments.engine.tts import InvalidRequest, TTSEngine
from deployments.protocol import SynthesisRequest
from helpers.text_strategies import TEXTS


@pytest.fixture(scope="module")
def engine(engine_settings):
    return TTSEngine(engine_settings, engine_settings.device)


@settings(max_examples=150)
@given(TEXTS)
def test_any_text_is_prepared_or_refused_naming_text(engine, text):
    try:
        job = engine.prepare(SynthesisRequest(text), lambda event: None)
    except InvalidRequest as refused:
        assert refused.param == "text" and str(refused)
        return
    assert job.entries and job.max_steps >= job.min_steps > 0


def test_the_issue_example_never_reaches_the_tokenizer(engine):
    with pytest.raises(InvalidRequest, match=r"lone surrogate \(U\+DCFF\)"):
        engine.prepare(SynthesisRequest("abc \udcff def"), lambda event: None)
