"""What both backup engines share: the error type and all-or-nothing target files."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from app.errors import DomainError


class BackupError(DomainError):
    """A backup or restore could not be done; the message says why and what to do."""


def describe_os_error(exc: OSError) -> str:
    return exc.strerror or str(exc)


@contextmanager
def atomic_file(target: Path, *, force: bool) -> Iterator[Path]:
    """A hidden temporary path next to ``target``, renamed to it when the block ends
    without an error and deleted otherwise: a failed backup leaves nothing behind, and
    a reader never sees a half-written one under the final name."""
    target = target.expanduser()
    if target.is_dir():
        raise BackupError(f"{target} is a folder; give the path of the backup file to write")
    if target.exists() and not force:
        raise BackupError(f"{target} exists already; add --force to replace it")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {describe_os_error(exc)}") from exc
    os.close(fd)
    partial = Path(name)
    try:
        yield partial
        with open(partial, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    except BaseException:
        with suppress(OSError):
            partial.unlink()
        raise


@contextmanager
def work_dir(near: Path) -> Iterator[Path]:
    """A private scratch folder on the same file system as ``near`` (no /tmp space
    surprises for a big database), removed afterwards."""
    try:
        path = Path(tempfile.mkdtemp(prefix=".hitmap-backup-", dir=near))
    except OSError as exc:
        raise BackupError(f"cannot write in {near}: {describe_os_error(exc)}") from exc
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file (mode 0600) all or nothing."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(name)
        raise


PG_DUMP_MAGIC = b"PGDMP"  # the first bytes of pg_dump's custom format


def is_pg_dump(source: Path) -> bool:
    """True when ``source`` is a pg_dump custom-format file; refuses a missing file."""
    try:
        with open(source, "rb") as handle:
            return handle.read(len(PG_DUMP_MAGIC)) == PG_DUMP_MAGIC
    except IsADirectoryError as exc:
        raise BackupError(f"{source} is a folder; give the backup file") from exc
    except OSError as exc:
        raise BackupError(f"cannot read {source}: {describe_os_error(exc)}") from exc
