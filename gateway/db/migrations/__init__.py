"""Alembic migration scripts of the gateway schema."""
