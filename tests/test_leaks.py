"""Nothing internal reaches clients: no server paths, no exception text, no Ray internals. Real
requests against the real Serve app (tiny model, local Ray with logical GPUs)."""

from __future__ import annotations

import re

import httpx
import pytest
from test_mcp import audio_of, error_text, mcp_session, run
from test_outputs import CPU_WORKER

# What an unhandled exception's text would show: an errno, a path under a temporary folder, a repr.
INTERNALS = re.compile(r"Errno|/tmp/|pytest-of|Traceback|Error\(|ActorID|[0-9a-f]{32}\b")


def test_info_names_the_model_without_its_path(client, tiny_checkpoint):
    info = client.get("/api/info")
    assert info.json()["model"] == f"local/{tiny_checkpoint.name}"
    assert str(tiny_checkpoint.parent) not in info.text
    assert f"local/{tiny_checkpoint.name}" in [m["id"] for m in client.get("/v1/models").json()["data"]]


def test_voice_listings_show_ids_not_paths(client, tiny_checkpoint):
    for path in ("/api/voices", "/v1/audio/voices"):
        listing = client.get(path)
        assert listing.status_code == 200 and not re.search(r'"/|\\\\|/tmp/|/root/|/home/', listing.text), path


@pytest.fixture(scope="module")
def unwritable_url(serve_cluster, tmp_path_factory) -> str:
    """An app whose outputs_dir is a regular file: saving fails with an OSError naming the path."""
    blocker = tmp_path_factory.mktemp("blocked") / "outputs"
    blocker.write_text("not a folder")
    return serve_cluster.deploy("unwritable", "/unwritable", args={"outputs_dir": str(blocker)}, worker=CPU_WORKER)


def test_an_unexpected_rest_failure_is_a_generic_json_500(unwritable_url):
    failed = httpx.post(f"{unwritable_url}/api/tts", json={"text": "Save me.", "save": True}, timeout=300)
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "internal_error"
    assert not INTERNALS.search(failed.text), failed.text
    # The same request without saving works: only the failing part failed.
    assert httpx.post(f"{unwritable_url}/api/tts", json={"text": "Save me."}, timeout=300).status_code == 200


def test_an_unexpected_mcp_tool_failure_is_a_generic_tool_error(unwritable_url):
    async def scenario():
        async with mcp_session(f"{unwritable_url}/mcp") as session:
            failed = await session.call_tool("text_to_speech", {"text": "Save me."})
            unsaved = await session.call_tool("text_to_speech", {"text": "Save me.", "save": False})
            return failed, unsaved

    failed, unsaved = run(scenario)
    message = error_text(failed)
    assert "internal error" in message and not INTERNALS.search(message), message
    assert "outputs" not in message and "FileExistsError" not in message
    audio_of(unsaved)  # the session goes on, and save=false needs no folder
