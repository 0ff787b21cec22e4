"""HITMAP_RETENTION_DAYS: a number of days from 0 (forever) to 3650, or a clear stop."""

from __future__ import annotations

import pytest

from app.settings import SettingsError, load_settings


@pytest.mark.parametrize(("raw", "days"), [("0", 0), (" 365 ", 365), ("3650", 3650)])
def test_accepted_values(monkeypatch, raw, days):
    monkeypatch.setenv("HITMAP_RETENTION_DAYS", raw)
    assert load_settings().retention_days == days


def test_default_keeps_forever(monkeypatch):
    monkeypatch.delenv("HITMAP_RETENTION_DAYS", raising=False)
    assert load_settings().retention_days == 0


@pytest.mark.parametrize("raw", ["-1", "3651", "a year", "1.5", ""])
def test_bad_values_stop_with_the_fix(monkeypatch, raw):
    monkeypatch.setenv("HITMAP_RETENTION_DAYS", raw)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "HITMAP_RETENTION_DAYS" in str(error.value)
    assert "use e.g. 365, or 0 to keep visits and clicks forever" in str(error.value)
