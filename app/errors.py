"""Domain errors. Services raise these; one handler in app.main turns them into responses."""

from __future__ import annotations


class DomainError(Exception):
    """Base class; ``message`` is safe to show to the user."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    status = 404


class InvalidInput(DomainError):
    status = 400


class Conflict(DomainError):
    status = 409


class NotAuthenticated(DomainError):
    status = 401


class RateLimited(DomainError):
    status = 429
