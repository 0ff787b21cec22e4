"""Sign-up, login with throttling, sessions, password changes, API tokens, deletion."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.accounts import repository
from app.addresses import address_key
from app.clock import Clock
from app.db import Database
from app.errors import Conflict, InvalidInput, NotAuthenticated, NotFound, RateLimited
from app.inputs import check_text
from app.models import Account, ApiToken
from app.security import (
    DUMMY_PASSWORD_HASH,
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    PasswordWorkBusy,
    hash_new_password,
    hash_password,
    keyed_digest,
    new_token,
    password_needs_rehash,
    token_digest,
    verify_login_password,
    verify_password,
)

EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
API_TOKEN_PREFIX = "hm_"  # noqa: S105 - a public marker, not a secret
MAX_TOKEN_NAME = 100


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int  # per account from one address
    max_failures_per_address: int
    max_failures_per_account: int
    window: dt.timedelta
    session_lifetime: dt.timedelta


def normalize_email(raw: str) -> str:
    email = check_text(raw, "email").strip().lower()
    if len(email) > 254 or not EMAIL_PATTERN.match(email):
        raise InvalidInput("enter a valid email address, e.g. you@example.org")
    return email


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"the password may have at most {MAX_PASSWORD_LENGTH} characters")


def sign_up(session: Session, clock: Clock, email: str, password: str) -> Account:
    email = normalize_email(email)
    check_password_strength(password)
    # Hashed before the first statement: on SQLite the unit of work holds the database's
    # one write lock from then on, and the hash is ~0.1 s of CPU on purpose.
    try:
        password_hash = hash_new_password(password)
    except PasswordWorkBusy as exc:
        raise RateLimited(BUSY_MESSAGE) from exc
    if repository.find_by_email(session, email) is not None:
        raise Conflict("an account with this email already exists; log in instead")
    try:
        with session.begin_nested():
            return repository.insert(
                session, email=email, password_hash=password_hash, now=clock.now()
            )
    except IntegrityError as exc:
        raise Conflict("an account with this email already exists; log in instead") from exc


BUSY_MESSAGE = "too many logins are being checked right now; try again in a minute"


@dataclass(frozen=True)
class _Budget:
    bucket: bytes  # keyed hash: neither the email nor the address is stored
    limit: int


def _budgets(
    secret: str, policy: LoginPolicy, email: str, client_ip: str
) -> tuple[_Budget, _Budget, _Budget]:
    """Per account from this address, per address, per account (see the settings for the
    numbers). An unknown email gets the same budgets as a registered one: throttling must
    not tell which emails have accounts. Always in this order (repository.count_attempts)."""
    client_ip = address_key(client_ip)  # IPv6 by /64: one client holds them all
    return (
        _Budget(
            keyed_digest(secret, "login-account-ip", f"{email}\x00{client_ip}"),
            policy.max_failures,
        ),
        _Budget(keyed_digest(secret, "login-ip", client_ip), policy.max_failures_per_address),
        _Budget(keyed_digest(secret, "login-email", email), policy.max_failures_per_account),
    )


def authenticate(
    db: Database,
    clock: Clock,
    policy: LoginPolicy,
    secret: str,
    *,
    email: str,
    password: str,
    client_ip: str,
) -> Account:
    """The account for these credentials, or NotAuthenticated / RateLimited.

    Short units of work of its own instead of the request's one, because checking a
    password is slow on purpose (argon2: ~0.1 s of CPU) and no transaction may stay
    open meanwhile: on SQLite every unit of work holds the database's one write lock
    (BEGIN IMMEDIATE), so the counter's writer would wait for every login. So:

    1. count the attempt in every budget before checking anything, and read the account
       (one short write; if a budget is spent it is rolled back, so a refused attempt
       counts nowhere and a stranger stopped at one address cannot use up the account's
       budget from there). Counting first makes the limit exact under parallel guesses:
       the eleventh of thirty simultaneous guesses is refused without a check;
    2. check the password with no transaction open (the same work for an unknown email,
       against a dummy hash, so the answer and its timing do not tell whether an email
       has an account);
    3. on success only, give the attempt back (another short write): the account from this
       address starts afresh, and the address and account budgets do not count successes.
       A failure stays counted as it was in step 1.
    """
    now = clock.now()
    email = email.strip().lower()
    budgets = _budgets(secret, policy, email, client_ip)
    with db.session() as session:
        counts = repository.count_attempts(session, [b.bucket for b in budgets], now, policy.window)
        if any(counts[b.bucket] > b.limit for b in budgets):
            minutes = max(1, int(policy.window.total_seconds() // 60))
            raise RateLimited(f"too many failed logins; try again in {minutes} minutes")
        account = repository.find_by_email(session, email)
    stored = account.password_hash if account else DUMMY_PASSWORD_HASH
    try:
        ok = verify_login_password(stored, password)
    except PasswordWorkBusy as exc:
        with db.session() as session:  # not checked: it counts against nobody
            repository.forget_attempts(session, reset=None, give_back=[b.bucket for b in budgets])
        raise RateLimited(BUSY_MESSAGE) from exc
    if account is None or not ok:
        raise NotAuthenticated("wrong email or password")
    new_hash = hash_password(password) if password_needs_rehash(account.password_hash) else None
    with db.session() as session:
        repository.forget_attempts(
            session, reset=budgets[0].bucket, give_back=[b.bucket for b in budgets[1:]]
        )
        if new_hash is not None:
            repository.set_password_hash(session, account.id, new_hash)
    return account


def forget_expired_attempts(db: Database, clock: Clock, policy: LoginPolicy) -> int:
    """Hourly: failed-login counts whose window has passed. A flood with made-up emails
    leaves three rows per email and address; without this they would stay for good."""
    with db.session() as session:
        return repository.delete_expired_attempts(session, clock.now() - policy.window)


def start_session(session: Session, clock: Clock, policy: LoginPolicy, account: Account) -> str:
    token = new_token()
    now = clock.now()
    repository.delete_expired_sessions(session, now)
    repository.insert_session(
        session,
        token_hash=token_digest(token),
        account_id=account.id,
        now=now,
        expires=now + policy.session_lifetime,
    )
    return token


def account_for_session(session: Session, clock: Clock, token: str | None) -> Account | None:
    if not token:
        return None
    return repository.find_session_account(session, token_digest(token), clock.now())


def end_session(session: Session, token: str | None) -> None:
    if token:
        repository.delete_session(session, token_digest(token))


def change_password(
    session: Session,
    account: Account,
    *,
    current: str,
    new: str,
    keep_session: str | None,
    revoke_api_tokens: bool = False,
) -> int:
    """Set the new password; returns how many API tokens were revoked with it."""
    if not verify_password(account.password_hash, current):
        raise InvalidInput("the current password is wrong")
    check_password_strength(new)
    repository.set_password_hash(session, account.id, hash_password(new))
    # Other devices are logged out: a changed password must lock out whoever knew the old one.
    keep = token_digest(keep_session) if keep_session else None
    repository.delete_other_sessions(session, account.id, keep)
    # API tokens do not depend on the password; whoever knew it may have made one.
    return repository.delete_tokens(session, account.id) if revoke_api_tokens else 0


def delete_account(session: Session, account: Account, *, password: str) -> None:
    if not verify_password(account.password_hash, password):
        raise InvalidInput("the password is wrong; the account was not deleted")
    repository.delete_account(session, account.id)


def find_account(session: Session, email: str) -> Account:
    account = repository.find_by_email(session, normalize_email(email))
    if account is None:
        raise NotFound(f"no account with email {email.strip()}")
    return account


# --- API tokens ---------------------------------------------------------------


def create_api_token(session: Session, clock: Clock, account: Account, name: str) -> str:
    """Create a token and return it once; only its hash is stored."""
    name = check_text(name, "name").strip()
    if not name or len(name) > MAX_TOKEN_NAME:
        raise InvalidInput(f"give the token a name of 1 to {MAX_TOKEN_NAME} characters")
    token = API_TOKEN_PREFIX + new_token()
    repository.insert_token(
        session,
        account_id=account.id,
        name=name,
        token_hash=token_digest(token),
        prefix=token[:10],
        now=clock.now(),
    )
    return token


def list_api_tokens(session: Session, account: Account) -> list[ApiToken]:
    return list(repository.list_tokens(session, account.id))


def revoke_api_token(session: Session, account: Account, token_id: int) -> None:
    if repository.delete_token(session, account.id, token_id) == 0:
        raise NotFound("no such token")


def account_for_api_token(session: Session, clock: Clock, token: str) -> Account:
    found = repository.find_token_account(session, token_digest(token))
    if found is None:
        raise NotAuthenticated("invalid or revoked API token")
    api_token, account = found
    api_token.last_used_at = clock.now()
    return account
