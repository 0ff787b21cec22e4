"""Helpers for the JSON API tests."""

from __future__ import annotations

from app.accounts import service as accounts
from app.context import AppContext
from app.models import Account


def token_for(ctx: AppContext, account: Account, name: str = "test") -> str:
    with ctx.db.session() as session:
        return accounts.create_api_token(session, ctx.clock, account, name)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
