"""What a client-facing text must never show: errnos, temporary paths, exception names, Ray ids."""

from __future__ import annotations

import re

# What an unhandled exception's text would show: an errno, a path under a temporary folder, a repr.
INTERNALS = re.compile(r"Errno|/tmp/|pytest-of|Traceback|Error\(|ActorID|[0-9a-f]{32}\b")


# An exception class name ("ConnectionError", "ModelUnavailableError") or an absolute path.
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b")


ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/[\w.-]+/")


def assert_client_safe(text: str) -> None:
    for pattern in (INTERNALS, EXCEPTION_NAME, ABSOLUTE_PATH):
        assert not pattern.search(text), (pattern.pattern, text)
    assert "127.0.0.1:9" not in text  # the hub endpoint the worker was given: the log's business
