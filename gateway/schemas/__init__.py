"""Pydantic models of the HTTP API (the Create / Public rungs of the model ladder)."""
