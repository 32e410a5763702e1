"""What each side of the layout may import (issue 16): the engine package runs without Ray, and
the ingress package without torch. Checked in a fresh interpreter, since this test process may
have imported anything already."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_fresh(code: str) -> None:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_engine_protocol_scheduler_manager_and_fakes_import_no_ray_and_no_torch():
    run_fresh("""
        import sys
        import deployments.engine.base, deployments.engine.fakes, deployments.engine.models
        import deployments.engine.scheduler, deployments.engine.model_manager
        assert 'ray' not in sys.modules
        assert 'torch' not in sys.modules  # the fakes and the scheduler tests stay fast
    """)


def test_the_ingress_modules_import_no_torch():
    # app.py, run.py and launch.py start or deploy the whole service; every other module is the
    # ingress's, which runs on a CPU node without the model's code.
    run_fresh("""
        import importlib, pkgutil, sys
        import serve_app

        skipped = {"serve_app.app", "serve_app.run", "serve_app.launch"}
        for module in pkgutil.walk_packages(serve_app.__path__, "serve_app."):
            if module.name not in skipped:
                importlib.import_module(module.name)
                assert 'torch' not in sys.modules, module.name + " imports torch"
    """)


def test_make_serves_prefetch_imports_nothing_heavy():
    # It runs in the launcher before Ray starts: the hub client and config files only.
    run_fresh("""
        import sys
        import serve_app.prefetch, serve_app.download_display
        heavy = [m for m in ('torch', 'moshi', 'ray', 'fastapi') if m in sys.modules]
        assert not heavy, heavy
    """)
