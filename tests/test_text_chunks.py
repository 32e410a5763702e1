"""Splitting long text into pieces, and the break tags moshi understands (pure functions, no model)."""

import random
import re

import pytest

from deployments.text_chunks import MAX_BREAK_S, normalize_breaks, split_text

SENTENCE_END = re.compile(r"[.!?]$")
BREAK = '<break time="1.000s"/>'


def random_text(rng: random.Random, words: int, breaks: bool = True) -> str:
    """Words of 1-14 letters, with sentence and clause punctuation, and sometimes a break tag."""
    out = []
    for _ in range(words):
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzé") for _ in range(rng.randint(1, 14)))
        roll = rng.random()
        if roll < 0.03:  # long sentences, to exercise the cuts inside them
            word += rng.choice(".!?")
        elif roll < 0.2:
            word += rng.choice(",;:")
        out.append(word)
        if breaks and rng.random() < 0.04:
            out.append(BREAK)
    return " ".join(out)


def check_pieces(text: str, pieces: list[str], max_chars: int) -> None:
    assert pieces, "no piece"
    # Nothing lost, nothing added, order kept (whitespace is normalised to single spaces).
    assert " ".join(pieces).split() == text.split()
    for piece in pieces:
        assert piece == piece.strip() and "  " not in piece
        # Only a single word (or break tag) longer than the limit may exceed it.
        assert len(piece) <= max_chars or len(piece.replace(BREAK, "_").split()) == 1, (len(piece), piece)


@pytest.mark.parametrize("max_chars", [20, 37, 80, 400])
@pytest.mark.parametrize("seed", range(6))
def test_pieces_fit_and_keep_every_word(seed, max_chars):
    rng = random.Random(seed)
    text = random_text(rng, words=rng.randint(1, 300))
    pieces = split_text(text, max_chars)
    check_pieces(text, pieces, max_chars)
    if len(text) <= max_chars:
        assert pieces == [text]


def test_short_text_is_one_piece():
    assert split_text("Hello  there,\n world.", 80) == ["Hello there, world."]


def test_sentence_boundaries_are_preferred():
    sentences = ["The first sentence is here.", "Is this the second one?", "Yes, and a third!",
                 "Then a fourth sentence, rather longer than the others.", "Fifth."]
    text = " ".join(sentences)
    max_chars = 60  # every sentence fits, two do not
    pieces = split_text(text, max_chars)
    check_pieces(text, pieces, max_chars)
    assert len(pieces) > 1
    for piece in pieces:
        assert SENTENCE_END.search(piece), piece
    # Sentences are packed together while they fit (not one piece per sentence).
    assert len(pieces) < len(sentences)
    assert [s for piece in pieces for s in re.split(r"(?<=[.!?]) ", piece)] == sentences


def test_over_long_sentence_is_cut_after_clause_punctuation():
    text = ("one two three four, five six seven eight; nine ten eleven twelve, "
            "thirteen fourteen fifteen sixteen")
    pieces = split_text(text, 45)
    check_pieces(text, pieces, 45)
    assert len(pieces) > 1
    for piece in pieces[:-1]:
        assert piece[-1] in ",;", pieces


def test_clause_cut_never_makes_a_piece_overflow():
    # Cutting after "aaaa," would leave the two long words together, over the limit.
    text = "aaaa, bbbbbbbbbbbbbb cccccccccccccc dd"
    pieces = split_text(text, 20)
    check_pieces(text, pieces, 20)


def test_a_single_over_long_word_stays_whole():
    long_word = "x" * 50
    text = f"short words {long_word} and more words here."
    pieces = split_text(text, 20)
    check_pieces(text, pieces, 20)
    assert long_word in pieces


def test_break_tags_are_kept_whole():
    rng = random.Random(7)
    text = " ".join(f"{random_text(rng, 6, breaks=False)} {BREAK}" for _ in range(30))
    for max_chars in (20, 30, 80):
        pieces = split_text(text, max_chars)
        check_pieces(text, pieces, max_chars)
        joined = " ".join(pieces)
        assert joined.count(BREAK) == text.count(BREAK) == 30
        for piece in pieces:
            # Every "<break" in a piece is a complete tag.
            assert piece.count("<break") == piece.count(BREAK), piece


def test_a_break_glued_to_words_is_never_cut():
    text = f"Hello{BREAK}world. " + "filler " * 20
    for max_chars in (20, 25, 40):
        pieces = split_text(text.strip(), max_chars)
        assert sum(piece.count(BREAK) for piece in pieces) == 1
        assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


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
