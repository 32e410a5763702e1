"""Splitting long text into pieces the model generates one after the other.

Pieces end at sentence boundaries when possible (so the seam is a natural pause), then at clause
punctuation, then between words. `<break time="..."/>` tags are kept whole.
"""

from __future__ import annotations

import re

_UNIT_RE = re.compile(r'<break\s+time="[^"]*"\s*/?>|\S+')
_SENTENCE_END_RE = re.compile(r'([.!?…。！？]["\')\]»”]*|<break\s[^>]*>)$')
_CLAUSE_END_RE = re.compile(r"[,;:，、；：—]$")


def _split_long(units: list[str], max_chars: int) -> list[list[str]]:
    """Splits one over-long sentence, preferring to cut after clause punctuation."""
    pieces: list[list[str]] = []
    current: list[str] = []
    last_clause_end = -1
    for unit in units:
        if current and len(" ".join(current + [unit])) > max_chars:
            if last_clause_end >= 0:
                pieces.append(current[: last_clause_end + 1])
                current = current[last_clause_end + 1:]
            else:
                pieces.append(current)
                current = []
            last_clause_end = -1
            for index, kept in enumerate(current):
                if _CLAUSE_END_RE.search(kept):
                    last_clause_end = index
        current.append(unit)
        if _CLAUSE_END_RE.search(unit):
            last_clause_end = len(current) - 1
    if current:
        pieces.append(current)
    return pieces


def split_text(text: str, max_chars: int) -> list[str]:
    """Pieces of `text`, each at most `max_chars` long (a single longer word stays whole)."""
    sentences: list[list[str]] = [[]]
    for unit in _UNIT_RE.findall(text):
        sentences[-1].append(unit)
        if _SENTENCE_END_RE.search(unit):
            sentences.append([])
    chunks: list[str] = []
    current = ""
    for sentence in sentences:
        if not sentence:
            continue
        sentence_text = " ".join(sentence)
        if len(sentence_text) > max_chars:
            if current:
                chunks.append(current)
                current = ""
            chunks.extend(" ".join(piece) for piece in _split_long(sentence, max_chars))
        elif current and len(current) + 1 + len(sentence_text) > max_chars:
            chunks.append(current)
            current = sentence_text
        else:
            current = f"{current} {sentence_text}" if current else sentence_text
    if current:
        chunks.append(current)
    return chunks
