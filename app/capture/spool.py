"""A durable local spool for hits the database could not take.

Records are appended to segment files, each record framed as
``length (4 bytes) | crc32 (4 bytes) | payload``, and fsynced before the
caller is told the hit is safe. Replay reads closed segments in order; a torn
or corrupt tail (a crash mid-append) is detected by its length or checksum,
skipped, and counted in the log, never a crash. A segment is deleted only
after every record in it was applied, and each record carries an id so that
the applier can make replay exactly-once.

Several processes may share one spool directory. The segment a process appends
to is held under an exclusive ``flock`` that the kernel drops when the process
dies (even by kill -9), and a replayer takes the same lock before it reads a
segment: a live writer's segment is never read, a dead one's is adopted.

The spool holds what the database would hold: site ids, days, keyed visitor
hashes and coarse locations. Never an IP address or a user agent.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("hitmap.spool")

HEADER = struct.Struct(">II")
MAX_RECORD = 16 * 1024 * 1024
SEGMENT_BYTES = 4 * 1024 * 1024  # a full segment is closed so replay can start on it


@dataclass(frozen=True)
class SpoolRecord:
    record_id: str
    payload: Any


@dataclass
class ReplayReport:
    applied: int = 0
    corrupt_bytes: int = 0
    segments: int = 0
    failed_segments: int = 0


class Spool:
    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._current: Path | None = None
        self._written = 0

    # --- writing ---------------------------------------------------------------

    def append(self, payload: Any, record_id: str | None = None) -> str:
        """Write one record and fsync it; returns its id. Raises OSError if the disk fails.

        A failed append leaves no partial frame behind: the segment is cut back to its
        last whole record and closed, so records written later are never hidden behind
        a broken one."""
        record_id = record_id or uuid.uuid4().hex
        body = json.dumps({"id": record_id, "data": payload}, separators=(",", ":")).encode()
        frame = memoryview(HEADER.pack(len(body), zlib.crc32(body)) + body)
        with self._lock:
            fd = self._open()
            try:
                done = 0
                while done < len(frame):
                    done += os.write(fd, frame[done:])
                os.fsync(fd)
            except OSError:
                with suppress(OSError):
                    os.ftruncate(fd, self._written)
                self._close_current()
                raise
            self._written += len(frame)
            if self._written >= self.segment_bytes:
                self._close_current()
        return record_id

    def _open(self) -> int:
        if self._fd is None:
            name = f"spool-{time.time_ns():020d}-{os.getpid()}.log"
            # Locked under a private name, then renamed: a replayer in another process
            # must never see (and delete) the new segment before we hold its lock.
            private = self.directory / f"new-{name}"
            fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(private, self.directory / name)
            self._fd, self._current, self._written = fd, self.directory / name, 0
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the new file's name must survive a crash too
            finally:
                os.close(dir_fd)
        return self._fd

    def _close_current(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._current = None

    def close(self) -> None:
        with self._lock:
            self._close_current()

    # --- reading ---------------------------------------------------------------

    def pending_segments(self) -> list[Path]:
        return sorted(self.directory.glob("spool-*.log"))

    def has_pending(self) -> bool:
        return any(p.stat().st_size > 0 for p in self.pending_segments())

    @staticmethod
    def parse(data: bytes) -> tuple[list[SpoolRecord], int]:
        """The readable records of a segment and the number of corrupt bytes after them."""
        records: list[SpoolRecord] = []
        offset = 0
        while offset + HEADER.size <= len(data):
            length, crc = HEADER.unpack_from(data, offset)
            body = data[offset + HEADER.size : offset + HEADER.size + length]
            if length > MAX_RECORD or len(body) != length or zlib.crc32(body) != crc:
                break
            try:
                obj = json.loads(body)
                records.append(SpoolRecord(str(obj["id"]), obj["data"]))
            except (ValueError, KeyError, TypeError):
                break
            offset += HEADER.size + length
        return records, len(data) - offset

    def replay(
        self,
        apply: Callable[[SpoolRecord], None],
        skip: Callable[[Exception], bool] = lambda exc: False,
    ) -> ReplayReport:
        """Apply every spooled record in order; delete a segment once all of it is applied.

        ``apply`` must be idempotent per record id. If it raises, the segment stays for
        the next attempt, and replay stops, unless ``skip(error)`` says to go on with
        the next segment (one bad record must not hold back the others). Segments
        another live process still appends to, or replays, are left alone.
        """
        with self._lock:
            self._close_current()  # new appends go to a fresh segment
        report = ReplayReport()
        for segment in self.pending_segments():
            if segment == self._current:
                continue
            try:
                self._replay_segment(segment, apply, report)
            except Exception as exc:
                if not skip(exc):
                    raise
                report.failed_segments += 1
        return report

    def _replay_segment(
        self, segment: Path, apply: Callable[[SpoolRecord], None], report: ReplayReport
    ) -> None:
        try:
            fd = os.open(segment, os.O_RDONLY)
        except FileNotFoundError:
            return  # another process finished it
        except OSError:
            log.exception("spool segment %s cannot be read; left in place", segment.name)
            report.failed_segments += 1
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a live writer or another replayer holds it
            if os.fstat(fd).st_nlink == 0:
                return  # replayed and deleted while we waited for the lock
            with os.fdopen(os.dup(fd), "rb") as stream:
                records, corrupt = self.parse(stream.read())
            if corrupt:
                log.warning(
                    "spool segment %s: skipped a corrupt tail of %d bytes after %d good records",
                    segment.name,
                    corrupt,
                    len(records),
                )
                report.corrupt_bytes += corrupt
            for record in records:
                apply(record)
                report.applied += 1
            segment.unlink(missing_ok=True)
            report.segments += 1
        finally:
            os.close(fd)  # releases the lock
