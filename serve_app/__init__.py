"""HTTP side of the service: the `Ingress` deployment (FastAPI: web UI, REST API, OpenAI-compatible
API, MCP) in front of the `TTSWorker` replicas. It never touches a GPU."""
