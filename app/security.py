"""Password hashing, opaque tokens and keyed hashes shared by the features."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

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
