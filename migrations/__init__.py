"""Alembic migrations; run them with `hitmap migrate` (also done by `hitmap serve`)."""
