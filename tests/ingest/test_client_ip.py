"""Who the client is: the socket peer, or the right-most untrusted X-Forwarded-For entry."""

from __future__ import annotations

import ipaddress

import pytest

from app.ingest.pipeline import client_ip_of

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("203.0.113.9", "81.2.69.142", (), "203.0.113.9"),  # no proxies trusted: XFF ignored
        ("203.0.113.9", "81.2.69.142", PROXIES, "203.0.113.9"),  # peer not trusted: ignored
        ("10.0.0.2", "81.2.69.142", PROXIES, "81.2.69.142"),
        ("10.0.0.2", "6.6.6.6, 81.2.69.142, 10.0.0.7", PROXIES, "81.2.69.142"),  # spoofed left
        ("10.0.0.2", "10.1.1.1, 10.0.0.7", PROXIES, "10.1.1.1"),  # all trusted: left-most
        ("10.0.0.2", None, PROXIES, "10.0.0.2"),
        ("10.0.0.2", "not-an-ip", PROXIES, None),
        ("10.0.0.2", " 2001:db8::1 ", PROXIES, "2001:db8::1"),
    ],
)
def test_client_ip_of(peer, xff, trusted, expected):
    assert client_ip_of(peer, xff, trusted) == expected


def test_forwarded_for_is_ignored_without_trusted_proxies(ctx, client):
    """With the default (no trusted proxies) a forged header cannot pick the location."""
    from sqlalchemy import select

    from app.context import build_context
    from app.main import create_app
    from app.models import Visit
    from tests.factories import hit, make_account, make_site

    settings = ctx.settings.model_copy(update={"trusted_proxies": []})
    settings.__dict__.pop("trusted_networks", None)
    plain = build_context(settings, db=ctx.db, clock=ctx.clock)
    site = make_site(plain, make_account(plain))
    from fastapi.testclient import TestClient

    with TestClient(create_app(plain), client=("81.2.69.142", 4000)) as direct:
        hit(direct, site.public_key, ip="216.160.83.56")
    with ctx.db.session() as session:
        (visit,) = session.scalars(select(Visit).where(Visit.site_id == site.site_id)).all()
    assert visit.country_code == "GB"  # the socket peer, not the forged US address
