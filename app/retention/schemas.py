"""What the site page's "Data retention" section shows (``_retention.html``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.retention import service
from app.settings import MAX_RETENTION_DAYS, Settings
from app.sites.scope import SiteScope


@dataclass(frozen=True)
class RetentionForm:
    action: str
    mode: str  # the checked choice: "default", "forever" or "days"
    days: str  # the number field's value
    default_label: str
    summary: str  # what happens to this site's rows now
    max_days: int = MAX_RETENTION_DAYS


def _days_text(days: int) -> str:
    if days == service.FOREVER:
        return "keep forever"
    return "1 day" if days == 1 else f"{days} days"


def retention_form(
    session: Session,
    settings: Settings,
    scope: SiteScope,
    *,
    mode: str | None = None,
    days: str | None = None,
) -> RetentionForm:
    """The section for ``scope``; ``mode``/``days`` put back a refused form's values."""
    choice = service.choice_of(session, scope)
    effective = service.effective_days(choice, settings.retention_days)
    if mode is None:
        mode = "default" if choice is None else "forever" if choice == 0 else "days"
    if days is None:
        days = str(choice) if choice else ""
    return RetentionForm(
        action=f"/sites/{scope.public_key}/retention",
        mode=mode,
        days=days,
        default_label=f"Instance default ({_days_text(settings.retention_days)})",
        summary=service.describe(effective, settings.nightly_at),
    )
