"""Text conventions shared by the engine and the captions: `<break time="..."/>` tags written the
one way moshi reads them (`normalize_breaks`), and where a sentence ends (caption cues).

Text is no longer cut into pieces: a text of any length speaks in one slot (deployments/engine/tts.py).
"""

from __future__ import annotations

import re

# Where the captions cut their cues.
SENTENCE_END_RE = re.compile(r'([.!?…。！？]["\')\]»”]*|<break\s[^>]*>)$')


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
