"""GPU side of the service: `engine/` (the models driven as slot engines, no Ray), `serve/` (the
worker deployment and its Ray plumbing), `protocol.py` (what crosses a worker handle)."""
