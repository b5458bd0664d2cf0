"""Alembic migrations; installed as ``connector.migrations``."""
