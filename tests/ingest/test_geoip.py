"""GeoIP lookups on MaxMind's test database and on the bundled default database."""

from __future__ import annotations

from app.ingest.geoip import UNKNOWN_LOCATION, GeoLocator
from app.settings import Settings
from tests.conftest import TEST_GEOIP


def test_test_database_locations():
    geo = GeoLocator(TEST_GEOIP)
    london = geo.lookup("81.2.69.142")
    assert (london.country_code, london.city, london.latitude, london.longitude) == (
        "GB",
        "London",
        51.51,
        -0.09,
    )
    milton = geo.lookup("216.160.83.56")
    assert (milton.country_code, milton.region, milton.city) == ("US", "Washington", "Milton")
    assert milton.accuracy_km is not None and milton.accuracy_km > 0


def test_unknown_private_and_garbage_addresses():
    geo = GeoLocator(TEST_GEOIP)
    for ip in ["8.8.8.8", "10.1.2.3", "127.0.0.1", "::1", "nonsense", ""]:
        assert geo.lookup(ip) == UNKNOWN_LOCATION


def test_bundled_default_database_is_used_and_real():
    settings = Settings()
    assert settings.geoip_path.name == "GeoLite2-City.mmdb"
    geo = GeoLocator(settings.geoip_path)
    assert "City" in geo.database_type
    google = geo.lookup("8.8.8.8")
    assert google.country_code == "US"
    assert google.latitude is not None and round(google.latitude, 2) == google.latitude
    assert geo.lookup("81.2.69.142").country_code == "GB"
