"""What /api/info tells the page about the model, read without a cluster."""

from __future__ import annotations

import json


def test_a_checkpoint_without_the_marker_is_not_called_a_test_model(tmp_path):
    from serve_app.service.served_models import checkpoint_is_test_model as _checkpoint_is_test_model

    (tmp_path / "config.json").write_text(json.dumps({"model_id": {"sig": "1e68beda", "epoch": 240}}))
    assert _checkpoint_is_test_model(str(tmp_path)) is False
    assert _checkpoint_is_test_model(str(tmp_path / "missing")) is False
