"""Reading /metrics the way Prometheus does (its own text parser), and databases that fail."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.db import Database, make_engine

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def unreachable(database_url: str, tmp_path: Path) -> Database:
    """A database of the same kind that cannot be reached."""
    if database_url.startswith("sqlite"):
        return Database(make_engine(f"sqlite:///{tmp_path}/missing/dir/hitmap.sqlite3"))
    return Database(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/hitmap"))
