"""Password hashing, opaque tokens and keyed hashes shared by the features."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

T = TypeVar("T")

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Logins are what strangers can send by the thousand, and each check is ~0.1 s of CPU on
# purpose. So their checks run on threads of their own: at most half the cores at once,
# at the lowest CPU priority (nice 19, about 1.5 % of a normal thread's share when both
# want the CPU; at +10 a flood still raised the counter's p99 1.45-1.70x, bench/README).
# A flood of wrong passwords then waits in this queue instead of taking the CPU from the
# counter's event loop and writer (24 parallel checks did), while on a quiet server a
# login still gets a core at once. Only for checks made with no transaction open: one
# that held SQLite's write lock while it queued here would make the counter's writer
# wait for the flood.
LOGIN_CHECK_NICENESS = 19


def _lower_priority() -> None:
    # On Linux the nice value belongs to the thread (and threads it starts inherit it);
    # elsewhere, or without the right, checks keep the normal priority.
    with suppress(OSError, AttributeError):
        me = threading.get_native_id()
        niceness = os.getpriority(os.PRIO_PROCESS, me)
        os.setpriority(os.PRIO_PROCESS, me, min(19, niceness + LOGIN_CHECK_NICENESS))


_login_checks = ThreadPoolExecutor(
    max_workers=max(1, (os.cpu_count() or 2) // 2),
    thread_name_prefix="login-check",
    initializer=_lower_priority,
)


# Checks waiting for those threads, at most: each waiter holds a thread of the server's
# pool (every synchronous page and the beacons run there), so a flood queued without a
# bound would stall all of them, not just logins. Past it a login or sign-up is refused
# at once (PasswordWorkBusy) instead of waiting.
MAX_WAITING_PASSWORD_WORK = 8
_waiting = threading.BoundedSemaphore(MAX_WAITING_PASSWORD_WORK)


class PasswordWorkBusy(Exception):
    """Too many password checks and hashes are waiting already: try again later."""


def _rationed(work: Callable[..., T], *args: str) -> T:
    if not _waiting.acquire(blocking=False):
        raise PasswordWorkBusy
    try:
        return _login_checks.submit(work, *args).result()
    finally:
        _waiting.release()


def verify_login_password(password_hash: str, password: str) -> bool:
    """:func:`verify_password` on the login-check threads (see above); call it with no
    transaction open. Raises PasswordWorkBusy when too many wait already."""
    return _rationed(verify_password, password_hash, password)


def hash_new_password(password: str) -> str:
    """:func:`hash_password` for sign-ups (anyone may send them): on the same rationed
    threads as login checks, and with no transaction open."""
    return _rationed(hash_password, password)


def password_needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


# Verifying against a real hash when the account does not exist keeps login
# timing the same for known and unknown emails.
DUMMY_PASSWORD_HASH = _hasher.hash("not a real password, only for timing")


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def token_digest(token: str) -> bytes:
    """Stored form of an opaque bearer token or session id (SHA-256: tokens are random)."""
    return hashlib.sha256(token.encode()).digest()


def keyed_digest(secret: str, purpose: str, value: str) -> bytes:
    """HMAC-SHA256 of ``value`` for one ``purpose``; used where a raw value must not be stored."""
    return hmac.new(secret.encode(), f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()
