"""A private, throwaway PostgreSQL cluster that a benchmark may stop and start at will.

The machine's shared PostgreSQL is never touched: the cluster lives in a temporary
directory owned by the ``postgres`` OS user (initdb refuses to run as root), listens
on 127.0.0.1 on a free port with its socket in that directory, trusts local
connections and keeps ``fsync`` on. ``stop()`` is ``pg_ctl stop -m fast`` (what
``pg_ctlcluster ... stop`` does); ``start()`` starts it again. Leaving the context
stops it immediately and removes the directory.

    with PrivateCluster() as pg:
        url = pg.url            # postgresql+psycopg://postgres@127.0.0.1:PORT/hitmap
        pg.stop(); pg.start()
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import free_port

BIN = Path(os.environ.get("HITMAP_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"


class PrivateCluster:
    def __init__(self, dbname: str = "hitmap") -> None:
        self.dbname = dbname
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="hitmap-pgcluster-"))
        self.data = self.root / "data"
        self.log = self.root / "postgresql.log"
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def _as_postgres(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(BIN / cmd[0]), *cmd[1:]]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", OS_USER, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=check)

    def __enter__(self) -> PrivateCluster:
        if not (BIN / "initdb").exists():
            raise SystemExit(f"{BIN / 'initdb'} not found: set HITMAP_PG_BIN")
        try:
            if os.geteuid() == 0:
                user = pwd.getpwnam(OS_USER)
                os.chown(self.root, user.pw_uid, user.pw_gid)
            self.root.chmod(0o700)
            self._as_postgres(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                "--no-sync",  # initdb's own files only; the server runs with fsync on
            )  # fmt: skip
            self.start()
            import psycopg

            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @property
    def admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=on -c max_connections=200"
        )
        self._as_postgres(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options,
            "start",
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def __exit__(self, *exc: object) -> None:
        try:
            if self.data.exists():
                self._as_postgres(
                    "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False
                )
        finally:
            self.running = False
            shutil.rmtree(self.root, ignore_errors=True)
