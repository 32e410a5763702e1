"""Headless Chromium (Debian's package: `make browser`) for the browser tests: `from helpers.browser import browser`."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (containers, root), no GPU, and nothing that phones home: the page must need only the service.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@contextmanager
def chromium(*extra_args: str):
    """Headless Chromium with CHROMIUM_ARGS and `extra_args` (a fake microphone, say)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched
