"""Saved outputs on the running service: the outputs_max_bytes cap holds under real saves."""

import httpx
import pytest

# ---- the cap through the real REST API ----------------------------------------------------------
QUOTA_BYTES = 200_000  # pcm is 48 kB per second: a few short clips fit, a long text's clip does not


CPU_WORKER = {"ray_actor_options": {"num_gpus": 0},
              "autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1}}


@pytest.fixture(scope="module")
def quota_app(serve_cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("quota-outputs")
    url = serve_cluster.deploy("quota", "/quota", args={"outputs_dir": str(folder), "outputs_max_bytes": QUOTA_BYTES},
                               worker=CPU_WORKER)
    yield url, folder
    serve_cluster.remove("quota")


def test_saved_outputs_stay_under_the_cap_and_the_newest_survive(quota_app):
    url, folder = quota_app
    names = []
    with httpx.Client(base_url=url, timeout=300) as http:
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
