"""What every protocol (REST, OpenAI, Kyutai WebSocket, MCP) calls: the only part of the ingress
that talks to the workers through Ray."""
