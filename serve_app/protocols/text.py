"""The text field every speech API shares (REST `text`, OpenAI `input`) as its schema states it:
the engine's rule for a text with something to say (deployments/engine/base.py's
SPEAKABLE_TEXT_PATTERN) and the `max_text_chars` setting as its maxLength, filled in when the
document is built (serve_app/openapi.py). The checks themselves stay where they were (the
ingress's IngressContext.check_text, the worker's clean_text), with their own messages; the
schema only says what they refuse, so that a request the schema allows is one the service takes."""

from __future__ import annotations

from pydantic import Field

from deployments.engine.base import SPEAKABLE_TEXT_PATTERN

# A field whose maxLength is a setting names the setting under this key.
MAX_LENGTH_SETTING = "x-max-length-setting"
# A field that names one of the app's models carries this key: its `enum` is the app's model names
# and ids, filled in when the document is built (serve_app/openapi.py).
MODEL_NAMES = "x-model-names"
# A cfg_coef field: the document states the app's models' cfg rules there (serve_app/openapi.py).
CFG_RULES = "x-cfg-rules"

TEXT_RULES = ("At most `max_text_chars` characters, with something to say (not only whitespace or "
              "control characters; no NUL; Unicode text: no lone surrogates). "
              '`<break time="0.5s"/>` inserts a pause (10 s at most each); words and pauses may ask for '
              "at most `max_audio_s` seconds of audio.")


def speech_text(description: str, example: str):
    """The Field of a text to speak."""
    return Field(..., description=f"{description} {TEXT_RULES}", examples=[example],
                 json_schema_extra={"minLength": 1, "pattern": SPEAKABLE_TEXT_PATTERN,
                                    MAX_LENGTH_SETTING: "max_text_chars"})
