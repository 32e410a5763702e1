"""The suite's own layout: pytest imports test modules by basename (no packages under tests/), so
two modules of one name in two cost folders stop the collection of the whole suite."""

from __future__ import annotations

import collections
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_name():
    names = collections.Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert len(names) > 30  # every folder was walked
    assert [name for name, count in names.items() if count > 1] == []
