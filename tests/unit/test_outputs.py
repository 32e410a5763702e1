"""Saved outputs: served back by the names the store gave out only, pruned when old, and the
outputs_max_bytes cap held under real saves through the REST API (the ingress in process over the
fake engine, tests/helpers/inprocess_app.py)."""

import errno
import os
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from helpers.inprocess_app import build_app, mcp_tool
from helpers.leaks import INTERNALS
from serve_app.errors import APIError, install_error_handlers
from serve_app.service.outputs import OutputStore


def test_saved_files_are_found_by_name_only(tmp_path):
    store = OutputStore(tmp_path / "out")
    name = store.save(b"RIFF....", "wav")
    assert store.path(name).read_bytes() == b"RIFF...."
    (tmp_path / "secret.wav").write_bytes(b"x")
    for probe in ["../secret.wav", "/etc/passwd", name.upper(), name + "/..", "x" * 32 + ".wav", ""]:
        assert store.path(probe) is None


def test_old_files_are_pruned_and_others_kept(tmp_path):
    store = OutputStore(tmp_path, max_age_s=3600)
    old = store.save(b"old", "mp3")
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("not ours")
    two_hours_ago = time.time() - 7200
    os.utime(tmp_path / old, (two_hours_ago, two_hours_ago))
    os.utime(unrelated, (two_hours_ago, two_hours_ago))
    fresh = store.save(b"new", "mp3")
    assert store.prune() == 1
    assert store.path(old) is None and store.path(fresh) is not None
    assert unrelated.exists()  # only files the store names are ever deleted


def test_without_max_age_nothing_is_pruned(tmp_path):
    store = OutputStore(tmp_path)
    name = store.save(b"keep", "wav")
    os.utime(tmp_path / name, (0, 0))
    assert store.prune() == 0 and store.path(name) is not None


# ---- size cap (outputs_max_bytes) ---------------------------------------------------------------
def saved_bytes(directory) -> int:
    return sum(p.stat().st_size for p in directory.iterdir())


def test_oldest_files_go_so_the_folder_stays_under_the_cap(tmp_path):
    store = OutputStore(tmp_path, max_bytes=1000)
    names = []
    for i in range(8):
        names.append(store.save(bytes(300 + 10 * i), "wav"))
        os.utime(tmp_path / names[-1], (1000 + i, 1000 + i))  # a strict order, whatever the clock
        assert saved_bytes(tmp_path) <= 1000
        assert store.path(names[-1]) is not None  # the file just written is kept
    kept = [n for n in names if store.path(n)]
    assert kept == names[-len(kept):] and len(kept) == 2  # 360 + 370 fit, + 350 would not
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_a_file_larger_than_the_cap_is_refused_and_nothing_is_deleted(tmp_path):
    store = OutputStore(tmp_path, max_bytes=1000)
    small = store.save(b"x" * 600, "mp3")
    with pytest.raises(APIError) as refused:
        store.save(b"y" * 1001, "wav")
    assert (refused.value.status, refused.value.code) == (507, "output_too_large")
    assert "larger than the space for saved files" in refused.value.message
    assert [p.name for p in tmp_path.iterdir()] == [small]


def test_files_vanishing_meanwhile_are_tolerated(tmp_path):
    """Another ingress replica sharing the folder deletes files between listing and deleting."""
    store = OutputStore(tmp_path, max_bytes=1000)
    first, second = store.save(b"a" * 400, "wav"), store.save(b"b" * 400, "wav")
    os.utime(tmp_path / first, (1000, 1000))
    listing = store._saved_files

    def listed_then_deleted_elsewhere():
        files = listing()
        (tmp_path / first).unlink(missing_ok=True)
        return files

    store._saved_files = listed_then_deleted_elsewhere
    third = store.save(b"c" * 400, "wav")
    assert store.path(second) and store.path(third) and saved_bytes(tmp_path) <= 1000


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_507_and_leaves_no_partial_file(tmp_path, monkeypatch, code):
    store = OutputStore(tmp_path / "out", max_bytes=10_000)
    kept = store.save(b"k" * 100, "wav")

    def write_half_then_fail(path, data):
        path.write_bytes(data[: len(data) // 2])  # the disk fills up midway
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(OutputStore, "_write", staticmethod(write_half_then_fail))
    with pytest.raises(APIError) as full:
        store.save(b"z" * 1000, "wav")
    assert (full.value.status, full.value.code) == (507, "insufficient_storage")
    assert str(tmp_path) not in full.value.message
    assert [p.name for p in (tmp_path / "out").iterdir()] == [kept]

    # Through the service's real error handlers: the JSON error shape with status 507.
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/save")
    def save():
        return {"name": store.save(b"z" * 1000, "wav")}

    response = TestClient(app).post("/save")
    assert response.status_code == 507
    assert response.json()["error"]["code"] == "insufficient_storage"
    assert "no space left" in response.json()["error"]["message"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [kept]


def test_other_write_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    store = OutputStore(tmp_path)

    def fail(path, data):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(OutputStore, "_write", staticmethod(fail))
    with pytest.raises(OSError):
        store.save(b"z", "wav")
    assert list(tmp_path.iterdir()) == []








# ---- the cap through the REST API ---------------------------------------------------------------
# The fake engine speaks 2 frames (2 x 80 ms) a word: pcm is 7,680 bytes a word, so three short
# clips overflow this cap and a 60-word text's clip (460 kB) can never fit.
QUOTA_BYTES = 30_000


def test_saved_outputs_stay_under_the_cap_and_the_newest_survive(tmp_path):
    folder = tmp_path / "quota-outputs"
    app = build_app(tmp_path, outputs_dir=str(folder), outputs_max_bytes=QUOTA_BYTES)
    names = []
    with TestClient(app) as http:
        for text in ["Hi.", "Hello there.", "Hi.", "Hello there.", "Hi there.", "Hello."]:
            response = http.post("/api/tts", json={"text": text, "format": "pcm", "save": True})
            assert response.status_code == 200, response.text
            assert str(folder) not in response.text  # a URL, never the server's path
            names.append(response.json()["url"].rsplit("/", 1)[1])
            on_disk = {p.name: p.stat().st_size for p in folder.iterdir()}
            assert sum(on_disk.values()) <= QUOTA_BYTES, on_disk
            assert names[-1] in on_disk and set(on_disk) <= set(names)  # nothing else, no .part
        kept = [n for n in names if (folder / n).exists()]
        assert len(kept) >= 2 and kept == names[-len(kept):]  # the newest, in order
        assert http.get(f"/api/outputs/{names[0]}").status_code == 404
        assert http.get(f"/api/outputs/{names[-1]}").status_code == 200

        before = sorted(p.name for p in folder.iterdir())
        refused = http.post("/api/tts", json={"text": " ".join(["word"] * 60), "format": "pcm", "save": True})
        assert refused.status_code == 507, refused.text
        error = refused.json()["error"]
        assert error["code"] == "output_too_large" and "outputs_max_bytes" in error["message"]
        assert sorted(p.name for p in folder.iterdir()) == before  # nothing deleted for it
        # The same text without saving is served as usual.
        assert http.post("/api/tts", json={"text": " ".join(["word"] * 60), "format": "pcm"}).status_code == 200


# ---- an unexpected failure ----------------------------------------------------------------------
# outputs_dir is a regular file: saving fails with an OSError naming the path, which no client sees.


@pytest.fixture
def unwritable(tmp_path):
    blocker = tmp_path / "outputs"
    blocker.write_text("not a folder")
    # The server error is re-raised to the caller by default; a client sees only the response.
    with TestClient(build_app(tmp_path, outputs_dir=str(blocker)), base_url="http://localhost:8000",
                    raise_server_exceptions=False) as http:
        yield http


def test_an_unexpected_rest_failure_is_a_generic_json_500(unwritable):
    failed = unwritable.post("/api/tts", json={"text": "Save me.", "save": True})
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "internal_error"
    assert not INTERNALS.search(failed.text) and "outputs" not in failed.text, failed.text
    # The same request without saving works: only the failing part failed.
    assert unwritable.post("/api/tts", json={"text": "Save me."}).status_code == 200


def test_an_unexpected_mcp_tool_failure_is_a_generic_tool_error(unwritable):
    def call(arguments: dict) -> dict:
        return mcp_tool(unwritable, "text_to_speech", {"text": "Save me.", **arguments})

    failed = call({})
    message = failed["content"][0]["text"]
    assert failed["isError"] and "internal error" in message and not INTERNALS.search(message), message
    assert "outputs" not in message and "FileExistsError" not in message
    unsaved = call({"save": False})  # save=false needs no folder
    assert not unsaved["isError"] and any(c["type"] == "audio" for c in unsaved["content"]), unsaved
