"""Pages for the start page, sign-up, login/logout and the account settings.

Thin by design: parse the form, call app.accounts.service, pick a response.
Form errors re-render the page with the message (never the password) and the
error's status; the unit of work (deps.DbSession) commits when a route returns.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from app import deps
from app.accounts import service as accounts
from app.accounts.schemas import DEFAULT_AFTER_LOGIN, TokenRow, safe_next_path
from app.context import AppContext
from app.deps import Csrf, CurrentAccount, DbSession, MaybeAccount
from app.errors import Conflict, InvalidInput, NotAuthenticated, RateLimited
from app.inputs import FormText, RowIdPath, checkbox
from app.models import Account
from app.templating import flash_url, render

router = APIRouter()

# Where to go after login. The one text input not refused for a control character:
# safe_next_path() replaces such a value (like any off-site one) with the default,
# so a tampered link still lets the owner log in, and the value is never stored.
NextField = Annotated[str, Form()]

# Flash messages shown after a redirect.
FLASH_ACCOUNT_DELETED = "Your account and all its sites, visits and statistics were deleted."
# (S105: these names mention passwords and tokens, but the values are messages.)
FLASH_PASSWORD_CHANGED = "Your password was changed; other devices were logged out."  # noqa: S105
FLASH_TOKEN_REVOKED = "The API token was revoked; programs using it stop working."  # noqa: S105


# --- helpers ------------------------------------------------------------------


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _with_flash(request: Request, path: str, message: str) -> str:
    return flash_url(request, path, message)


def _no_store(response: Response) -> Response:
    # Pages with account details or a fresh token must not stay in caches or history.
    response.headers["Cache-Control"] = "no-store"
    return response


def _set_session_cookie(response: Response, ctx: AppContext, token: str) -> None:
    response.set_cookie(
        deps.SESSION_COOKIE,
        token,
        max_age=ctx.settings.session_days * 24 * 60 * 60,
        path="/",
        httponly=True,
        samesite="lax",
        secure=ctx.settings.secure_cookies,
    )


def _clear_session_cookie(response: Response, ctx: AppContext) -> None:
    response.delete_cookie(
        deps.SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=ctx.settings.secure_cookies,
    )


def _log_in(
    request: Request, ctx: AppContext, session: Session, account: Account, to: str
) -> RedirectResponse:
    # A login replaces whatever session this browser had before.
    accounts.end_session(session, request.cookies.get(deps.SESSION_COOKIE))
    token = accounts.start_session(session, ctx.clock, ctx.login_policy, account)
    response = _redirect(to)
    _set_session_cookie(response, ctx, token)
    return response


# --- start page ---------------------------------------------------------------


@router.get("/", include_in_schema=False)
def home(request: Request, account: MaybeAccount) -> Response:
    if account is not None:
        return _redirect(DEFAULT_AFTER_LOGIN)
    return render(request, "home.html")


# --- sign-up ------------------------------------------------------------------


@router.get("/signup", include_in_schema=False)
def signup_page(request: Request, account: MaybeAccount) -> Response:
    if account is not None:
        return _redirect(DEFAULT_AFTER_LOGIN)
    return render(request, "signup.html", {"email": ""})


@router.post("/signup", include_in_schema=False, dependencies=[Csrf])
def signup(
    request: Request,
    ctx: deps.Ctx,
    session: DbSession,
    email: FormText = "",
    password: FormText = "",
    password_confirm: FormText = "",
) -> Response:
    try:
        if password != password_confirm:
            raise InvalidInput("the two passwords are not the same; type them again")
        account = accounts.sign_up(session, ctx.clock, email, password)
    except (InvalidInput, Conflict, RateLimited) as exc:
        return render(
            request,
            "signup.html",
            {"email": email.strip(), "error": exc.message, "conflict": isinstance(exc, Conflict)},
            exc.status,
        )
    return _log_in(request, ctx, session, account, DEFAULT_AFTER_LOGIN)


# --- login / logout -----------------------------------------------------------


@router.get("/login", include_in_schema=False)
def login_page(request: Request, account: MaybeAccount, next: str | None = None) -> Response:
    to = safe_next_path(next)
    if account is not None:
        return _redirect(to)
    return render(request, "login.html", {"email": "", "next": to})


@router.post("/login", include_in_schema=False, dependencies=[Csrf])
def login(
    request: Request,
    ctx: deps.Ctx,
    session: DbSession,
    email: FormText = "",
    password: FormText = "",
    next: NextField = "",
) -> Response:
    # The request's unit of work (DbSession, which begins at its first statement) is used
    # only after the password check, to start the login session: the check itself runs
    # between short units of work of its own (ctx.db.session(), see
    # accounts.authenticate) with no transaction open, because on SQLite any open unit of
    # work holds the database's one write lock. For the same reason this page does not
    # look up the browser's current session (MaybeAccount) before the check.
    to = safe_next_path(next or request.query_params.get("next"))
    try:
        account = accounts.authenticate(
            ctx.db,
            ctx.clock,
            ctx.login_policy,
            ctx.secret,
            email=email,
            password=password,
            client_ip=deps.client_ip(request),
        )
    except (NotAuthenticated, RateLimited) as exc:
        # Returned as a page with the form again (the attempt was counted by authenticate).
        response = render(
            request,
            "login.html",
            {"email": email.strip(), "next": to, "error": exc.message},
            exc.status,
        )
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(ctx.settings.login_window_seconds)
        return response
    return _log_in(request, ctx, session, account, to)


@router.post("/logout", include_in_schema=False, dependencies=[Csrf])
def logout(request: Request, ctx: deps.Ctx, session: DbSession) -> Response:
    accounts.end_session(session, request.cookies.get(deps.SESSION_COOKIE))
    response = _redirect("/")
    _clear_session_cookie(response, ctx)
    return response


# --- account settings ---------------------------------------------------------


def _account_page(
    request: Request,
    session: Session,
    account: Account,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    tokens = [TokenRow.of(t) for t in accounts.list_api_tokens(session, account)]
    context = {"email": account.email, "tokens": tokens, **extra}
    return _no_store(render(request, "account.html", context, status_code))


@router.get("/account", include_in_schema=False)
def account_page(request: Request, session: DbSession, account: CurrentAccount) -> Response:
    return _account_page(request, session, account)


@router.get("/account/{_action:path}", include_in_schema=False)
def account_action_page(_action: str) -> Response:
    # The account forms post to /account/...; a browser lands here with GET after
    # logging in again (deps.LoginRequired sends it back to the path it posted to).
    return _redirect("/account")


@router.post("/account/password", include_in_schema=False, dependencies=[Csrf])
def change_password(
    request: Request,
    session: DbSession,
    account: CurrentAccount,
    current_password: FormText = "",
    new_password: FormText = "",
    new_password_confirm: FormText = "",
    revoke_tokens: FormText = "",
) -> Response:
    revoke = checkbox(revoke_tokens, "revoke tokens")
    try:
        if new_password != new_password_confirm:
            raise InvalidInput("the two new passwords are not the same; type them again")
        revoked = accounts.change_password(
            session,
            account,
            current=current_password,
            new=new_password,
            keep_session=request.cookies.get(deps.SESSION_COOKIE),
            revoke_api_tokens=revoke,
        )
    except InvalidInput as exc:
        return _account_page(request, session, account, exc.status, password_error=exc.message)
    message = FLASH_PASSWORD_CHANGED
    if revoke:
        message += " " + _revoked_tokens_message(revoked)
    return _redirect(_with_flash(request, "/account", message))


def _revoked_tokens_message(revoked: int) -> str:
    if revoked == 0:
        return "There were no API tokens to revoke."
    tokens = "1 API token was" if revoked == 1 else f"{revoked} API tokens were"
    return f"{tokens} revoked; programs using them stop working."


@router.post("/account/tokens", include_in_schema=False, dependencies=[Csrf])
def create_token(
    request: Request,
    ctx: deps.Ctx,
    session: DbSession,
    account: CurrentAccount,
    name: FormText = "",
) -> Response:
    try:
        token = accounts.create_api_token(session, ctx.clock, account, name)
    except InvalidInput as exc:
        return _account_page(
            request, session, account, exc.status, token_error=exc.message, token_name=name
        )
    # Shown once, on this page only: never put in a URL, a cookie or a log.
    return _account_page(request, session, account, new_token=token, new_token_name=name.strip())


@router.post("/account/tokens/{token_id}/revoke", include_in_schema=False, dependencies=[Csrf])
def revoke_token(
    request: Request, session: DbSession, account: CurrentAccount, token_id: RowIdPath
) -> Response:
    accounts.revoke_api_token(session, account, token_id)
    return _redirect(_with_flash(request, "/account", FLASH_TOKEN_REVOKED))


@router.post("/account/delete", include_in_schema=False, dependencies=[Csrf])
def delete_account(
    request: Request,
    ctx: deps.Ctx,
    session: DbSession,
    account: CurrentAccount,
    password: FormText = "",
) -> Response:
    try:
        accounts.delete_account(session, account, password=password)
    except InvalidInput as exc:
        return _account_page(request, session, account, exc.status, delete_error=exc.message)
    response = _redirect(_with_flash(request, "/", FLASH_ACCOUNT_DELETED))
    # Its sites' keys stop counting here at once, elsewhere through the change log.
    response.background = BackgroundTask(ctx.site_directory.site_changed)
    _clear_session_cookie(response, ctx)
    return response
