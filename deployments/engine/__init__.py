"""The engines and everything they need that runs without Ray: moshi's streaming rows, the
scheduler, the model manager, voices, loading and the hub. Nothing here imports Ray or FastAPI."""
