"""Saved outputs: served back by the names the store gave out only, and pruned when old."""

import os
import time

from serve_app.outputs import OutputStore


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
