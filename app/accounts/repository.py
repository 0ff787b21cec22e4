"""All SQL for accounts, login sessions, login throttling and API tokens."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import case, delete, select, update
from sqlalchemy.orm import Session

from app.db import insert_for
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


def count_attempts(
    session: Session, buckets: Sequence[bytes], now: dt.datetime, window: dt.timedelta
) -> dict[bytes, int]:
    """Count one login attempt in each bucket and return each bucket's count, in one
    statement: a bucket seen for the first time starts at 1, one whose window has passed
    starts again at 1 from ``now``. Parallel logins neither lose a count nor collide on a
    first insert (each waits for the other's row). PostgreSQL locks the rows in the
    order given: every caller must give its kinds of bucket in the same order."""
    insert = insert_for(session, LoginThrottle).values(
        [{"bucket": bucket, "window_start": now, "failures": 1} for bucket in buckets]
    )
    expired = LoginThrottle.window_start < now - window
    stmt = insert.on_conflict_do_update(
        index_elements=[LoginThrottle.bucket],
        set_={
            "failures": case((expired, 1), else_=LoginThrottle.failures + 1),
            "window_start": case(
                (expired, insert.excluded.window_start), else_=LoginThrottle.window_start
            ),
        },
    ).returning(LoginThrottle.bucket, LoginThrottle.failures)
    return {bytes(bucket): int(failures) for bucket, failures in session.execute(stmt)}


def delete_expired_attempts(session: Session, before: dt.datetime) -> int:
    """Buckets whose window began before ``before``: their next attempt starts at 1 anyway."""
    result = session.execute(delete(LoginThrottle).where(LoginThrottle.window_start < before))
    return int(result.rowcount)  # type: ignore[attr-defined]


def forget_attempts(session: Session, *, reset: bytes | None, give_back: Sequence[bytes]) -> None:
    """After a successful login: ``reset`` forgets its count, each of ``give_back`` loses
    the attempt that was counted. One row per statement, in the order given (as in
    :func:`count_attempts`, so that two logins never wait for each other's rows)."""
    if reset is not None:
        session.execute(delete(LoginThrottle).where(LoginThrottle.bucket == reset))
    for bucket in give_back:
        session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.bucket == bucket, LoginThrottle.failures > 0)
            .values(failures=LoginThrottle.failures - 1)
        )


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
