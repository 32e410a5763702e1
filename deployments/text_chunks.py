"""Splitting long text into pieces the model generates one after the other.

Pieces end at sentence boundaries when possible (so the seam is a natural pause), then at clause
punctuation, then between words. `<break time="..."/>` tags are kept whole, and written the one
way moshi reads them (`normalize_breaks`).
"""

from __future__ import annotations

import re

# A unit is a break tag or a run of non-space characters; a tag glued to a word ("word<break .../>")
# is a unit of its own, so a cut can never fall inside it.
_UNIT_RE = re.compile(r'<break\s+time="[^"]*"\s*/?>|(?:(?!<break\s)\S)+')
# Shared with the WebSocket's piece cutting and the captions' cue cutting.
SENTENCE_END_RE = re.compile(r'([.!?…。！？]["\')\]»”]*|<break\s[^>]*>)$')
CLAUSE_END_RE = re.compile(r"[,;:，、；：—]$")


# moshi understands `<break time="1.5s"/>` only; anything else starting with `<break` would be
# read out as words. SSML's "ms" form is converted; breaks are capped (each one adds generation
# steps: an hour-long pause would hold the model for an hour).
MAX_BREAK_S = 10.0
_ANY_BREAK_RE = re.compile(r"<\s*break\b[^>]*>?", re.IGNORECASE)
_BREAK_TIME_RE = re.compile(r'<break\s+time="(\d+(?:\.\d*)?|\.\d+)\s*(s|ms)"\s*/?>', re.IGNORECASE)


def normalize_breaks(text: str) -> str:
    """Rewrites every break tag as `<break time="<seconds>s"/>`; raises ValueError for one that
    moshi cannot read or longer than MAX_BREAK_S."""
    def rewrite(match: re.Match) -> str:
        tag = _BREAK_TIME_RE.fullmatch(match.group(0))
        if tag is None:
            raise ValueError(f'unsupported tag {match.group(0)!r}: write pauses as <break time="1.5s"/>')
        seconds = float(tag.group(1)) / (1000.0 if tag.group(2).lower() == "ms" else 1.0)
        if seconds > MAX_BREAK_S:
            raise ValueError(f"a break lasts at most {MAX_BREAK_S:g}s, got {seconds:g}s")
        return f'<break time="{seconds:.3f}s"/>'

    return _ANY_BREAK_RE.sub(rewrite, text)


def _fits(units: list[str], max_chars: int) -> bool:
    return len(" ".join(units)) <= max_chars


def _split_long(units: list[str], max_chars: int) -> list[list[str]]:
    """Splits one over-long sentence, preferring to cut after clause punctuation."""
    pieces: list[list[str]] = []
    current: list[str] = []
    for unit in units:
        if current and not _fits(current + [unit], max_chars):
            cut = max((i for i, kept in enumerate(current) if CLAUSE_END_RE.search(kept)), default=None)
            # Cut after the last clause end only when what follows it still fits with the new unit.
            if cut is not None and _fits(current[cut + 1:] + [unit], max_chars):
                pieces.append(current[: cut + 1])
                current = current[cut + 1:]
            else:
                pieces.append(current)
                current = []
        current.append(unit)
    if current:
        pieces.append(current)
    return pieces


def split_text(text: str, max_chars: int) -> list[str]:
    """Pieces of `text`, each at most `max_chars` long (a single longer word stays whole)."""
    sentences: list[list[str]] = [[]]
    for unit in _UNIT_RE.findall(text):
        sentences[-1].append(unit)
        if SENTENCE_END_RE.search(unit):
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
