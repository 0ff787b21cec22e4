"""The spool's size, measured when /metrics is scraped.

Every process of a data dir shares one spool directory, so whichever process
answers the scrape sees all of it: these are gauges read from the files, not
values each process keeps. Segments are append-only and deleted whole, so the
records of a segment are counted once and then only the bytes added since.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.capture.spool import HEADER, MAX_RECORD


@dataclass(frozen=True, slots=True)
class SpoolSize:
    segments: int
    records: int
    bytes: int


@dataclass(slots=True)
class _Counted:
    inode: int
    offset: int  # end of the last whole record seen
    records: int


class SpoolStats:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._counted: dict[str, _Counted] = {}
        self._lock = threading.Lock()

    def measure(self) -> SpoolSize:
        with self._lock:
            segments = records = size = 0
            seen: set[str] = set()
            try:
                entries = list(os.scandir(self.directory))
            except FileNotFoundError:
                entries = []
            for entry in entries:
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue  # replayed and deleted meanwhile
                size += stat.st_size
                if not (entry.name.startswith("spool-") and entry.name.endswith(".log")):
                    continue  # a segment being created (new-…): no records yet
                segments += 1
                seen.add(entry.name)
                records += self._records(entry.path, entry.name, stat.st_ino, stat.st_size)
            for name in set(self._counted) - seen:
                del self._counted[name]
            return SpoolSize(segments, records, size)

    def _records(self, path: str, name: str, inode: int, size: int) -> int:
        counted = self._counted.get(name)
        if counted is None or counted.inode != inode or counted.offset > size:
            counted = self._counted[name] = _Counted(inode, 0, 0)
        if counted.offset == size:
            return counted.records
        try:
            with open(path, "rb") as stream:
                stream.seek(counted.offset)
                data = stream.read(size - counted.offset)
        except FileNotFoundError:
            return 0
        offset = 0
        while offset + HEADER.size <= len(data):
            length, _crc = HEADER.unpack_from(data, offset)
            if length > MAX_RECORD or offset + HEADER.size + length > len(data):
                break  # a record still being written, or a torn tail
            offset += HEADER.size + length
            counted.records += 1
        counted.offset += offset
        return counted.records


class SpoolCollector(Collector):
    def __init__(self, stats: SpoolStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = self.stats.measure()
        yield GaugeMetricFamily(
            "hitmap_spool_bytes", "Bytes in the hit spool (all processes).", value=size.bytes
        )
        yield GaugeMetricFamily(
            "hitmap_spool_records",
            "Spooled batches waiting for the database (all processes).",
            value=size.records,
        )
        yield GaugeMetricFamily(
            "hitmap_spool_segments", "Spool segment files not yet replayed.", value=size.segments
        )
