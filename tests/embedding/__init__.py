"""Tests of the embedding surface: the core under someone else's HTTP, the blocking example, uvicorn."""
