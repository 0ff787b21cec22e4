"""Engine set-up for SQLite and PostgreSQL, and the one unit-of-work scope that commits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    # Statement parameters never appear in errors or logs: they may hold visitor data.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 15}, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    connect_args = {"connect_timeout": 3}
    return create_engine(
        url, connect_args=connect_args, pool_size=10, max_overflow=20, pool_pre_ping=True, **kwargs
    )


SNAPSHOT_OPTION = "hitmap_snapshot"


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT; take control of BEGIN,
    # as the SQLAlchemy SQLite dialect documentation recommends.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front. A deferred transaction that reads
        # and then writes fails at once with "database is locked" (no busy wait) when
        # another connection committed in between; waiting for the lock is what we want.
        if conn.get_execution_options().get(SNAPSHOT_OPTION):
            # Database.snapshot(): reads only, so a deferred transaction; in WAL mode it
            # sees one consistent snapshot and never takes the database's one write lock.
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """Hands out unit-of-work sessions; the scope that opened one commits it."""

    def __init__(self, engine: Engine, bind: Engine | Connection | None = None) -> None:
        self.engine = engine
        options: dict[str, Any] = {"expire_on_commit": False}
        if isinstance(bind, Connection):
            # Tests: every commit becomes a savepoint release inside the test's transaction.
            options["join_transaction_mode"] = "create_savepoint"
        self._sessions = sessionmaker(bind=bind if bind is not None else engine, **options)
        self._kept_connections = not isinstance(bind, Connection)

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(make_engine(url))

    def psycopg_conninfo(self) -> str:
        """The PostgreSQL URL as a libpq connection string, for psycopg used directly."""
        from psycopg.conninfo import make_conninfo

        url = self.engine.url
        params = {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "dbname": url.database,
            "connect_timeout": 3,
            **{k: v for k, v in url.query.items() if isinstance(v, str)},
        }
        return make_conninfo("", **{k: v for k, v in params.items() if v is not None})

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def kept_session(self, holder: threading.local) -> Iterator[Session]:
        """A unit of work on a connection the calling thread keeps between uses.

        For the hit writer, which commits many small transactions a second: no pool
        checkout and no liveness ping per batch. After any error the connection is
        closed, and the next call opens a fresh one. (Tests bind the Database to one
        connection; there this is the plain :meth:`session`.)
        """
        if not self._kept_connections:
            with self.session() as session:
                yield session
            return
        conn: Connection | None = getattr(holder, "connection", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = holder.connection = self.engine.connect()
        session = Session(bind=conn, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except BaseException:
            holder.connection = None
            with suppress(Exception):  # it may be broken already; nothing to save
                session.rollback()
                conn.close()
            raise
        finally:
            session.close()

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A unit of work that only reads; it is rolled back, never committed.

        On SQLite it takes no write lock (the default session begins IMMEDIATE), so
        slow work between its reads, such as drawing a map, does not hold up the
        counter's writer. On PostgreSQL it is an ordinary transaction.
        """
        session = self._sessions()
        try:
            if self.dialect == "sqlite":
                session.connection(execution_options={SNAPSHOT_OPTION: True})
            yield session
        finally:
            session.rollback()
            session.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


def insert_for(session: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """A dialect insert that supports ON CONFLICT on both databases."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database dialect {name!r}: use PostgreSQL or SQLite")
