"""Request-scoped dependencies: the unit of work, the signed-in account, CSRF."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.accounts import service as accounts
from app.context import AppContext
from app.errors import DomainError
from app.models import Account
from app.security import keyed_digest, new_token

SESSION_COOKIE = "hitmap_session"
CSRF_COOKIE = "hitmap_csrf"
CSRF_FIELD = "csrf_token"


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def _unit_of_work(ctx: Ctx) -> Iterator[Session]:
    # The request scope is the one place that commits: when the route returns
    # without error, before the response is sent (scope="function").
    with ctx.db.session() as session:
        yield session


DbSession = Annotated[Session, Depends(_unit_of_work, scope="function")]


class LoginRequired(DomainError):
    status = 401

    def __init__(self, next_path: str) -> None:
        super().__init__("log in to see this page")
        self.login_url = f"/login?next={quote(next_path, safe='/')}"


class CsrfFailed(DomainError):
    status = 403


def optional_account(request: Request, ctx: Ctx, session: DbSession) -> Account | None:
    account = accounts.account_for_session(session, ctx.clock, request.cookies.get(SESSION_COOKIE))
    request.state.account = account
    return account


def require_account(
    request: Request, account: Annotated[Account | None, Depends(optional_account)]
) -> Account:
    if account is None:
        # After logging in, only a page can be returned to; a form post cannot be replayed.
        if request.method == "GET":
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        else:
            path = "/sites"
        raise LoginRequired(path)
    return account


CurrentAccount = Annotated[Account, Depends(require_account)]
MaybeAccount = Annotated[Account | None, Depends(optional_account)]


def csrf_cookie_value(request: Request) -> str:
    """The browser's CSRF cookie; created for this response if the browser has none."""
    value = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if not value:
        value = new_token(24)
        request.state.new_csrf = value
    return str(value)


def csrf_token(request: Request) -> str:
    ctx = get_ctx(request)
    return keyed_digest(ctx.secret, "csrf", csrf_cookie_value(request)).hex()


async def verify_csrf(request: Request) -> None:
    """Every form POST carries a token bound to the browser's CSRF cookie."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not isinstance(sent, str):
        raise CsrfFailed("the form expired; reload the page and try again")
    expected = keyed_digest(get_ctx(request).secret, "csrf", cookie).hex()
    if not hmac.compare_digest(sent, expected):
        raise CsrfFailed("the form expired; reload the page and try again")


Csrf = Depends(verify_csrf)


def client_ip(request: Request) -> str:
    from app.ingest.pipeline import client_ip_of

    peer = request.client.host if request.client else None
    ctx = get_ctx(request)
    return (
        client_ip_of(peer, request.headers.get("x-forwarded-for"), ctx.settings.trusted_networks)
        or "unknown"
    )
