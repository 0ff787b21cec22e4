"""A durable local spool for hits the database could not take.

Records are appended to segment files, each record framed as
``length (4 bytes) | crc32 (4 bytes) | payload``, and fsynced before the
caller is told the hit is safe. Replay reads closed segments in order; a torn
or corrupt tail (a crash mid-append) is detected by its length or checksum,
skipped, and counted in the log, never a crash. A segment is deleted only
after every record in it was applied, and each record carries an id so that
the applier can make replay exactly-once.

The spool holds what the database would hold: site ids, days, keyed visitor
hashes and coarse locations. Never an IP address or a user agent.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("hitmap.spool")

HEADER = struct.Struct(">II")
MAX_RECORD = 16 * 1024 * 1024


@dataclass(frozen=True)
class SpoolRecord:
    record_id: str
    payload: Any


@dataclass
class ReplayReport:
    applied: int = 0
    corrupt_bytes: int = 0
    segments: int = 0


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._current: Path | None = None

    # --- writing ---------------------------------------------------------------

    def append(self, payload: Any) -> str:
        """Write one record and fsync it; returns its id. Raises OSError if the disk fails."""
        record_id = uuid.uuid4().hex
        body = json.dumps({"id": record_id, "data": payload}, separators=(",", ":")).encode()
        frame = HEADER.pack(len(body), zlib.crc32(body)) + body
        with self._lock:
            fd = self._open()
            os.write(fd, frame)
            os.fsync(fd)
        return record_id

    def _open(self) -> int:
        if self._fd is None:
            name = f"spool-{time.time_ns():020d}-{os.getpid()}.log"
            self._current = self.directory / name
            self._fd = os.open(self._current, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
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

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.pending_segments())

    @staticmethod
    def read_segment(path: Path) -> tuple[list[SpoolRecord], int]:
        """The readable records of a segment and the number of corrupt bytes after them."""
        data = path.read_bytes()
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

    def replay(self, apply: Callable[[SpoolRecord], None]) -> ReplayReport:
        """Apply every spooled record in order; delete a segment once all of it is applied.

        ``apply`` must be idempotent per record id. If it raises, replay stops and the
        segment stays for the next attempt.
        """
        with self._lock:
            self._close_current()  # new appends go to a fresh segment
        report = ReplayReport()
        for segment in self._closed_segments():
            records, corrupt = self.read_segment(segment)
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
            segment.unlink()
            report.segments += 1
        return report

    def _closed_segments(self) -> Iterator[Path]:
        current = self._current
        for path in self.pending_segments():
            if path != current:
                yield path
