"""Hypothesis strategies for the text a client may send anywhere (REST, OpenAI, WebSocket, MCP):
characters of every Unicode category, lone surrogates included (JSON's "\\udcff" carries one),
control characters, whitespace of every kind, very long words and <break> tags, valid and not."""

from __future__ import annotations

from hypothesis import strategies as st

# Every code point, surrogates included (Hypothesis leaves category Cs out unless told).
ANY_CHARACTER = st.characters(exclude_categories=())
CONTROLS = st.characters(categories=["Cc"])
SPACES = st.sampled_from([" ", "\t", "\n", "\r\n", "\x0b", "\x1c", "\x85", "\u00a0", "\u1680", "\u2003",
                          "\u2028", "\u202f", "\u3000", "\u200b", "\ufeff"])
BREAK_TAGS = st.sampled_from(['<break time="0.5s"/>', '<break time="250ms" />', '<BREAK TIME="1s">',
                              '<break time="10s"/>', '<break time="11s"/>', '<break/>', '<break time="soon"/>',
                              '<break', '< break time="1s"/>'])
LONE_SURROGATES = st.characters(categories=["Cs"])
WORDS = st.text(ANY_CHARACTER, min_size=1, max_size=12)
LONG_WORDS = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzé漢字ß"), min_size=300, max_size=900)

PIECES = st.one_of(WORDS, SPACES, CONTROLS, BREAK_TAGS, LONE_SURROGATES, LONG_WORDS)
# Texts as clients write them (words, spaces, tags, the odd broken character) and as fuzzers do.
TEXTS = st.one_of(st.lists(PIECES, max_size=12).map("".join), st.text(ANY_CHARACTER, max_size=40))
