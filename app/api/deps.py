"""Bearer-token authentication for the JSON API.

`Authorization: Bearer hm_…` with a token made on the account page. A missing,
malformed, unknown or revoked token is a 401 with `WWW-Authenticate: Bearer`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.accounts import service as accounts
from app.deps import Ctx, DbSession
from app.errors import NotAuthenticated
from app.models import Account

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="An API token from your account page; it starts with `hm_`.",
)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def api_account(
    ctx: Ctx,
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Account:
    if credentials is None:
        raise _unauthorized("send an API token: Authorization: Bearer hm_…")
    token = credentials.credentials
    if not token.startswith(accounts.API_TOKEN_PREFIX):
        raise _unauthorized("invalid or revoked API token")
    try:
        return accounts.account_for_api_token(session, ctx.clock, token)
    except NotAuthenticated as exc:
        raise _unauthorized(exc.message) from exc


def no_store(response: Response) -> None:
    """API answers hold account data: no cache may keep them."""
    response.headers["Cache-Control"] = "no-store"


ApiAccount = Annotated[Account, Depends(api_account)]
