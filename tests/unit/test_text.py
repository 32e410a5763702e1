"""The break tags moshi understands (pure functions, no model)."""

import pytest

from deployments.engine.text import MAX_BREAK_S, normalize_breaks


def test_break_tags_are_normalised_for_moshi():
    assert normalize_breaks('a <break time="1s"/> b') == 'a <break time="1.000s"/> b'
    assert normalize_breaks('a <break time="500ms" /> b') == 'a <break time="0.500s"/> b'
    assert normalize_breaks('a<BREAK TIME="0.25s">b') == 'a<break time="0.250s"/>b'
    assert normalize_breaks("no tags, <b>not a break</b>") == "no tags, <b>not a break</b>"
    assert normalize_breaks("breakfast <breakfast>") == "breakfast <breakfast>"


@pytest.mark.parametrize("tag", ['<break/>', '<break strength="strong"/>', '<break time="1"/>',
                                 '<break time="soon"/>', '<break time="1s"'])
def test_unreadable_break_tags_are_refused(tag):
    with pytest.raises(ValueError, match="break"):
        normalize_breaks(f"Hello {tag} world")


def test_breaks_are_capped():
    assert normalize_breaks(f'<break time="{MAX_BREAK_S:g}s"/>')
    with pytest.raises(ValueError, match="at most"):
        normalize_breaks(f'<break time="{MAX_BREAK_S + 0.5:g}s"/>')
    with pytest.raises(ValueError, match="at most"):
        normalize_breaks('<break time="3600000ms"/>')
