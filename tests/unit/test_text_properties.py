"""Any text through the engine's text checks (deployments/engine/base.py), as properties over
every kind of text (tests/helpers/text_strategies.py): `clean_text` refuses with InvalidRequest or
returns speakable Unicode, never raises anything else; the pattern the OpenAPI document publishes
says exactly which texts it refuses for want of words; lone surrogates are named."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from deployments.engine.base import SPEAKABLE_TEXT_PATTERN, InvalidRequest, clean_text, unicode_problem
from deployments.engine.text import MAX_BREAK_S
from helpers.text_strategies import LONE_SURROGATES, TEXTS

MAX_CHARS = 2000
FEW = settings(max_examples=200)
SPEAKABLE = re.compile(SPEAKABLE_TEXT_PATTERN)
BREAK = re.compile(r"<\s*break\b", re.IGNORECASE)


@FEW
@given(TEXTS)
def test_clean_text_refuses_or_returns_speakable_unicode(text):
    try:
        cleaned = clean_text(text, MAX_CHARS)
    except InvalidRequest as refused:
        assert refused.param == "text" and str(refused)
        return
    cleaned.encode("utf-8")  # what the tokenizer needs
    assert cleaned.strip() and cleaned == cleaned.strip()
    assert not any(unicodedata.category(c) == "Cc" for c in cleaned)


@FEW
@given(TEXTS)
def test_the_published_pattern_is_the_engines_rule_for_texts_without_words(text):
    """Texts without break tags, within the length limit and Unicode: the pattern matches exactly
    those clean_text accepts."""
    if BREAK.search(text) or unicode_problem(text) or len(text) > MAX_CHARS:
        return
    try:
        clean_text(text, MAX_CHARS)
        accepted = True
    except InvalidRequest:
        accepted = False
    assert accepted == bool(SPEAKABLE.search(text)), repr(text)


@FEW
@given(TEXTS)
def test_unicode_problem_is_exactly_what_utf8_cannot_encode(text):
    try:
        text.encode("utf-8")
        encodable = True
    except UnicodeEncodeError:
        encodable = False
    assert (unicode_problem(text) is None) == encodable


@settings(max_examples=50)
@given(st.text(max_size=5), LONE_SURROGATES, st.text(max_size=5))
def test_a_lone_surrogate_is_refused_by_name_and_place(before, surrogate, after):
    text = f"abc {before}{surrogate}{after} def"
    problem = unicode_problem(text)
    assert problem and f"U+{ord(surrogate):04X}" in problem and "lone surrogate" in problem
    try:
        clean_text(text, MAX_CHARS)
    except InvalidRequest as refused:
        assert "lone surrogate" in str(refused) and refused.param == "text"
    else:
        raise AssertionError("a lone surrogate was accepted")


def test_the_issue_example_and_its_neighbours():
    assert "U+DCFF" in unicode_problem("abc \udcff def") and "character 4" in unicode_problem("abc \udcff def")
    assert unicode_problem("abc \U0001F600 def") is None  # a real astral character is fine
    assert SPEAKABLE.search("x") and not SPEAKABLE.search(" \t\n\u3000\x01") and not SPEAKABLE.search("a\x00b")
    assert clean_text(f'a <break time="{MAX_BREAK_S:g}s"/> b', MAX_CHARS)
