"""ARCHITECTURE.md stays true: every file or folder it names exists, and every module of the two
packages is on its map (a new module without a line there is a map that lies by omission)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "ARCHITECTURE.md").read_text()
# Paths in backticks, e.g. `deployments/engine/base.py` or `serve_app/security/` (placeholders
# such as `<name>.py` are templates, not files).
NAMED_PATH = re.compile(r"`((?:deployments|serve_app|tests|deploy|benchmarks)/[\w./-]*)`")


def test_every_path_the_document_names_exists():
    named = set(NAMED_PATH.findall(DOC))
    assert len(named) > 20  # the table and the path of a request name many
    missing = sorted(path for path in named if not (REPO / path).exists())
    assert not missing, missing


def test_every_module_is_on_the_map():
    mapped = set(re.findall(r"([\w]+\.py)", DOC.split("## Map of folders", 1)[1].split("## ", 1)[0]))
    modules = {p.name for package in ("deployments", "serve_app") for p in (REPO / package).rglob("*.py")
               if p.name != "__init__.py"}
    assert not modules - mapped, sorted(modules - mapped)
