"""Shapes for the account pages: where to go after login, and the token table rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.models import ApiToken

DEFAULT_AFTER_LOGIN = "/sites"
MAX_NEXT_LENGTH = 2000


def safe_next_path(raw: str | None) -> str:
    """A same-site path to go to after login, or the dashboard.

    Only a path starting with one "/" is accepted: "//host" and "/\\host" are
    read by browsers as another host, and browsers drop tabs and newlines
    from URLs, so any control character or backslash is refused too.
    """
    if not raw or len(raw) > MAX_NEXT_LENGTH:
        return DEFAULT_AFTER_LOGIN
    if not raw.startswith("/") or raw.startswith("//"):
        return DEFAULT_AFTER_LOGIN
    if "\\" in raw or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        return DEFAULT_AFTER_LOGIN
    return raw


@dataclass(frozen=True)
class TokenRow:
    """What the account page shows of an API token: never the token itself."""

    id: int
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None

    @classmethod
    def of(cls, token: ApiToken) -> TokenRow:
        return cls(
            id=token.id,
            name=token.name,
            prefix=token.prefix,
            created_at=token.created_at,
            last_used_at=token.last_used_at,
        )
