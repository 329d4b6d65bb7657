"""The REST, SSE and WebSocket API (FastAPI): ``create_app`` builds it, ``serve`` runs it."""
