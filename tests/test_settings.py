"""Typed settings fail fast with a message that says how to fix them."""

from __future__ import annotations

import pytest

from app.settings import Settings, SettingsError, load_settings


def test_secret_key_is_generated_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("HITMAP_DATA_DIR", str(tmp_path))
    first = load_settings().resolved_secret_key()
    second = load_settings().resolved_secret_key()
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_default_database_is_sqlite_in_the_data_dir(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'hitmap.sqlite3'}"


@pytest.mark.parametrize("weak", ["secret", "a" * 64, "changemechangemechangemechangeme"])
def test_production_refuses_a_weak_secret(tmp_path, weak):
    with pytest.raises(SettingsError, match="too weak for production"):
        Settings(data_dir=tmp_path, secret_key=weak, production=True).resolved_secret_key()
    Settings(data_dir=tmp_path, secret_key=weak).resolved_secret_key()  # fine in development


def test_bad_values_name_the_variable_and_the_fix(monkeypatch):
    monkeypatch.setenv("HITMAP_TRUSTED_PROXIES", "10.0.0.0/8, proxy.local")
    with pytest.raises(SettingsError, match="HITMAP_TRUSTED_PROXIES entry 'proxy.local'"):
        load_settings()
    monkeypatch.delenv("HITMAP_TRUSTED_PROXIES")
    monkeypatch.setenv("HITMAP_BASE_URL", "hitmap.example.com")
    with pytest.raises(SettingsError, match="must start with http"):
        load_settings()


def test_trusted_proxies_parse_from_a_comma_list(monkeypatch):
    monkeypatch.setenv("HITMAP_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")
    settings = load_settings()
    assert settings.trusted_proxies == ["127.0.0.1", "10.0.0.0/8"]
    assert len(settings.trusted_networks) == 2


def test_missing_geoip_file_says_how_to_fix(tmp_path):
    settings = Settings(data_dir=tmp_path, geoip_path=tmp_path / "nope.mmdb")
    with pytest.raises(SettingsError, match="HITMAP_GEOIP_PATH"):
        settings.check()


def test_https_base_url_means_secure_cookies():
    assert Settings(base_url="https://hitmap.example.com/").secure_cookies
    assert Settings(base_url="https://hitmap.example.com/").base_url == "https://hitmap.example.com"
    assert not Settings(base_url="http://127.0.0.1:8000").secure_cookies
