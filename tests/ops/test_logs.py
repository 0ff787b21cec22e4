"""Logs: JSON lines or text, and never a visitor's IP address or user agent."""

from __future__ import annotations

import io
import json
import logging

import pytest
from sqlalchemy.exc import OperationalError

from app.capture import repository
from app.heatmaps import repository as heatmap_repository
from app.ops.logs import JsonFormatter, configure_logging
from app.settings import SettingsError, load_settings
from tests.factories import hit, make_account, make_site
from tests.heatmaps.beacons import batch, click, send

VISITOR_IP = "81.2.69.160"
VISITOR_UA = "Mozilla/5.0 (X11; Linux x86_64) RecognisableBrowser/77.7"


@pytest.fixture
def log_output(settings):
    """This process's logging as `hitmap serve` sets it up, in JSON, into a buffer."""
    root = logging.getLogger()
    saved = root.level, logging.getLogger("uvicorn.access").disabled
    stream = io.StringIO()
    handler = configure_logging(settings.model_copy(update={"log_format": "json"}), stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        logging.getLogger("uvicorn.access").disabled = saved[1]


def _outage(*args, **kwargs):
    raise OperationalError("INSERT", {}, Exception("server closed the connection"))


def test_no_visitor_ip_or_user_agent_in_any_log_record(
    ctx, client, log_output, caplog, monkeypatch
):
    caplog.set_level(logging.DEBUG)
    site = make_site(ctx, make_account(ctx))
    as_visitor = {"ip": VISITOR_IP, "ua": VISITOR_UA}
    headers = {"user-agent": VISITOR_UA, "x-forwarded-for": VISITOR_IP}
    # Normal operation: a counted hit, a dropped one, a stored click batch.
    assert hit(client, site.public_key, **as_visitor).status_code == 200
    assert hit(client, site.public_key, **as_visitor, referer="https://evil.example/").status_code
    assert send(client, site.public_key, batch(click()), headers=headers).status_code == 204
    # The database fails: these paths log, and must still log nothing of the visitor.
    monkeypatch.setattr(repository, "insert_visits", _outage)
    hit(client, site.public_key, ip=VISITOR_IP, ua=VISITOR_UA + " again")
    ctx.ingest.writer.outage.mark_up()  # let the beacon try the database too
    monkeypatch.setattr(heatmap_repository, "insert_clicks", _outage)
    assert send(client, site.public_key, batch(click()), headers=headers).status_code == 204
    hit(client, "AAAAAAAAAAAAAAAAAAAAAA", **as_visitor)  # unknown key: fine, no log

    records = caplog.records
    assert records, "the outage should have been logged"
    formatter = JsonFormatter()
    for record in records:
        rendered = formatter.format(record) + logging.Formatter().format(record)
        for secret in (VISITOR_IP, "RecognisableBrowser"):
            assert secret not in rendered, rendered
            assert secret not in repr(record.__dict__)

    written = log_output.getvalue()
    assert VISITOR_IP not in written and "RecognisableBrowser" not in written
    lines = [json.loads(line) for line in written.splitlines()]
    events = {(e["logger"], e.get("event"), e.get("hits"), e.get("clicks")) for e in lines}
    assert ("hitmap.ingest", "database_unavailable", 1, None) in events
    assert ("hitmap.heatmaps", "database_unavailable", None, 1) in events
    spooled = next(e for e in lines if e.get("hits") == 1)
    assert spooled["level"] == "WARNING"
    assert spooled["message"] == "database unavailable; spooling a batch of 1 hits"
    assert spooled["error"] == "OperationalError" and "time" in spooled


def test_text_is_the_default_format(settings):
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging(settings, stream)
    try:
        logging.getLogger("hitmap.test").warning("plain %s", "words")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    line = stream.getvalue().strip()
    assert line.endswith("WARNING hitmap.test plain words")
    assert not line.startswith("{")


def test_a_wrong_log_setting_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setenv("HITMAP_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="HITMAP_LOG_FORMAT 'xml' is unknown; use text or json"):
        load_settings()
    monkeypatch.setenv("HITMAP_LOG_FORMAT", "JSON")
    monkeypatch.setenv("HITMAP_LOG_LEVEL", "loud")
    with pytest.raises(SettingsError, match="HITMAP_LOG_LEVEL 'loud' is unknown"):
        load_settings()
    monkeypatch.setenv("HITMAP_LOG_LEVEL", "warning")
    loaded = load_settings()
    assert (loaded.log_format, loaded.log_level) == ("json", "WARNING")
