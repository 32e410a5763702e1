"""DownloadProgress on files written by hand and a clock moved by hand: bytes, rate, ETA, idle time."""

from __future__ import annotations

from deployments.engine.download_progress import Downloads, DownloadProgress, PlannedFile, describe


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def grow(blob, n: int) -> None:
    blob.with_name(blob.name + ".incomplete").write_bytes(b"x" * n)


def test_bytes_on_disk_rate_eta_and_idle_time_follow_the_partial_files(tmp_path):
    clock = Clock()
    weights, tokenizer = tmp_path / "etag-weights", tmp_path / "etag-tokenizer"
    cached = tmp_path / "etag-config"
    cached.write_bytes(b"c" * 100)  # already in the cache: counted as done from the start
    progress = DownloadProgress("org/model", [PlannedFile("config.json", 100, cached),
                                              PlannedFile("w.safetensors", 10_000, weights),
                                              PlannedFile("tok.model", 900, tokenizer)], clock=clock)
    assert progress.needs_download()
    first = progress.snapshot()
    assert (first["bytes_done"], first["bytes_total"], first["files_done"], first["rate_bps"]) == (100, 11_000, 1, None)

    progress.begin("w.safetensors")
    grow(weights, 4_000)
    clock.now += 2.0
    assert progress.measure() == 4_100 and progress.idle_s() == 0.0
    snapshot = progress.snapshot()
    assert (snapshot["file"], snapshot["rate_bps"]) == ("w.safetensors", 2_000)  # 4000 bytes in 2 s
    assert snapshot["eta_s"] == 3.5  # 6900 bytes left at 2000 B/s

    clock.now += 3.0  # nothing arrives
    progress.measure()
    assert progress.idle_s() == 3.0

    weights.write_bytes(b"x" * 10_000)  # huggingface_hub renames the finished file
    weights.with_name(weights.name + ".incomplete").unlink()
    progress.finish("w.safetensors")
    assert progress.snapshot()["bytes_done"] == 10_100 and progress.snapshot()["files_done"] == 2


def test_the_status_shows_the_download_with_the_most_left_and_nothing_once_it_ends(tmp_path):
    downloads = Downloads()
    assert downloads.current() is None
    model = DownloadProgress("org/model", [PlannedFile("w", 3_700, tmp_path / "a")])
    voice = DownloadProgress("org/voices", [PlannedFile("v", 250, tmp_path / "b")])
    with downloads.tracking(voice):
        with downloads.tracking(model):
            assert downloads.current()["repo"] == "org/model"
        assert downloads.current()["repo"] == "org/voices"
    assert downloads.current() is None


def test_describe_says_how_far_how_fast_and_how_long():
    download = {"repo": "org/model", "bytes_done": 420, "bytes_total": 1_000, "rate_bps": 35_000_000, "eta_s": 150}
    assert describe(download) == "org/model: 42% of 1.0 kB at 35.0 MB/s, about 2 min left"
    assert describe({**download, "rate_bps": None, "eta_s": None}) == "org/model: 42% of 1.0 kB"
    assert describe({**download, "bytes_done": 1_000, "eta_s": 0.0}) == "org/model: 100% of 1.0 kB at 35.0 MB/s"
