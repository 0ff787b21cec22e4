"""Throwaway PostgreSQL databases for tests (the server at 127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

PG_ADMIN_DSN = os.environ.get(
    "HITMAP_TEST_PG_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)


def pg_url(dbname: str) -> str:
    params = dict(p.split("=", 1) for p in PG_ADMIN_DSN.split())
    user, host, port = params.get("user", "postgres"), params.get("host"), params.get("port")
    return f"postgresql+psycopg://{user}@{host or '127.0.0.1'}:{port or '5432'}/{dbname}"


@contextlib.contextmanager
def fresh_postgres(prefix: str = "hitmap_test") -> Iterator[str]:
    """Create a uniquely named database, yield its SQLAlchemy URL, drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def try_sqlite_write_lock(path: Path) -> str:
    """Take and release the write lock of the SQLite file at ``path`` from a connection
    of its own, without waiting: "took the write lock", or SQLite's refusal."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return "took the write lock"
    except sqlite3.OperationalError as exc:
        return str(exc)
    finally:
        other.close()
