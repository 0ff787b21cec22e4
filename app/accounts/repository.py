"""All SQL for accounts, login sessions, login throttling and API tokens."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.models import Account, ApiToken, LoginSession, LoginThrottle, Site
from app.sites import repository as sites_repository


def find_by_email(session: Session, email: str) -> Account | None:
    return session.scalars(select(Account).where(Account.email == email)).one_or_none()


def find_by_id(session: Session, account_id: int) -> Account | None:
    return session.get(Account, account_id)


def insert(session: Session, *, email: str, password_hash: str, now: dt.datetime) -> Account:
    account = Account(email=email, password_hash=password_hash, created_at=now)
    session.add(account)
    session.flush()
    return account


def set_password_hash(session: Session, account_id: int, password_hash: str) -> None:
    session.execute(
        update(Account).where(Account.id == account_id).values(password_hash=password_hash)
    )


def delete_account(session: Session, account_id: int) -> None:
    # Sites, visits, tokens and sessions go with it (ON DELETE CASCADE); the counts,
    # which have no foreign key, after it.
    site_ids = list(session.scalars(select(Site.id).where(Site.account_id == account_id)))
    session.execute(delete(Account).where(Account.id == account_id))
    sites_repository.delete_aggregates(session, site_ids)


# --- login sessions ---------------------------------------------------------


def insert_session(
    session: Session, *, token_hash: bytes, account_id: int, now: dt.datetime, expires: dt.datetime
) -> None:
    session.add(
        LoginSession(
            token_hash=token_hash, account_id=account_id, created_at=now, expires_at=expires
        )
    )
    session.flush()


def find_session_account(session: Session, token_hash: bytes, now: dt.datetime) -> Account | None:
    return session.scalars(
        select(Account)
        .join(LoginSession, LoginSession.account_id == Account.id)
        .where(LoginSession.token_hash == token_hash, LoginSession.expires_at > now)
    ).one_or_none()


def delete_session(session: Session, token_hash: bytes) -> None:
    session.execute(delete(LoginSession).where(LoginSession.token_hash == token_hash))


def delete_other_sessions(session: Session, account_id: int, keep: bytes | None) -> None:
    stmt = delete(LoginSession).where(LoginSession.account_id == account_id)
    if keep is not None:
        stmt = stmt.where(LoginSession.token_hash != keep)
    session.execute(stmt)


def delete_expired_sessions(session: Session, now: dt.datetime) -> None:
    session.execute(delete(LoginSession).where(LoginSession.expires_at <= now))


# --- login throttle ---------------------------------------------------------


def get_throttle(session: Session, bucket: bytes) -> LoginThrottle | None:
    return session.get(LoginThrottle, bucket)


def record_failure(session: Session, bucket: bytes, now: dt.datetime, window: dt.timedelta) -> None:
    row = session.get(LoginThrottle, bucket)
    if row is None:
        session.add(LoginThrottle(bucket=bucket, window_start=now, failures=1))
    elif now - row.window_start > window:
        row.window_start, row.failures = now, 1
    else:
        row.failures += 1
    session.flush()


def clear_throttle(session: Session, bucket: bytes) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.bucket == bucket))


# --- API tokens ---------------------------------------------------------------


def insert_token(
    session: Session,
    *,
    account_id: int,
    name: str,
    token_hash: bytes,
    prefix: str,
    now: dt.datetime,
) -> ApiToken:
    token = ApiToken(
        account_id=account_id, name=name, token_hash=token_hash, prefix=prefix, created_at=now
    )
    session.add(token)
    session.flush()
    return token


def list_tokens(session: Session, account_id: int) -> Sequence[ApiToken]:
    return session.scalars(
        select(ApiToken).where(ApiToken.account_id == account_id).order_by(ApiToken.id)
    ).all()


def delete_token(session: Session, account_id: int, token_id: int) -> int:
    result = session.execute(
        delete(ApiToken).where(ApiToken.id == token_id, ApiToken.account_id == account_id)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def delete_tokens(session: Session, account_id: int) -> int:
    result = session.execute(delete(ApiToken).where(ApiToken.account_id == account_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def find_token_account(session: Session, token_hash: bytes) -> tuple[ApiToken, Account] | None:
    row = session.execute(
        select(ApiToken, Account)
        .join(Account, Account.id == ApiToken.account_id)
        .where(ApiToken.token_hash == token_hash)
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None
