"""What the maps pages show: the owner's thumbnail style form."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.maps import repository as repo
from app.maps.kinds import THUMBNAIL_KEY
from app.maps.styles import BACKGROUNDS, SIZES, Style, current_style
from app.sites.scope import SiteScope

SIZE_LABELS = {
    "small": "Small (160 × 80)",
    "medium": "Medium (240 × 120)",
    "large": "Large (320 × 160)",
}
BACKGROUND_LABELS = {
    "light": "Light",
    "dark": "Dark",
    "transparent": "Transparent ocean",
}


@dataclass(frozen=True)
class Choice:
    value: str
    label: str
    selected: bool


@dataclass(frozen=True)
class StyleForm:
    """The "Counter style" section of the site page."""

    action: str
    preview: str
    style: Style
    rendered_at: dt.datetime | None

    @property
    def sizes(self) -> list[Choice]:
        return [Choice(s, SIZE_LABELS[s], s == self.style.size) for s in SIZES]

    @property
    def backgrounds(self) -> list[Choice]:
        return [Choice(b, BACKGROUND_LABELS[b], b == self.style.background) for b in BACKGROUNDS]

    @property
    def rendered_text(self) -> str | None:
        if self.rendered_at is None:
            return None
        return f"{self.rendered_at:%d %b %Y, %H:%M} UTC"


def style_form(session: Session, scope: SiteScope) -> StyleForm:
    """The section's values: the stored style and when the thumbnail was last drawn."""
    thumbnail = next(
        (
            m
            for m in repo.image_metas(session, scope)
            if (m.kind, m.span, m.variant) == THUMBNAIL_KEY
        ),
        None,
    )
    return StyleForm(
        action=f"/sites/{scope.public_key}/map-style",
        preview=f"/sites/{scope.public_key}/thumbnail.png",
        style=current_style(session, scope),
        rendered_at=thumbnail.rendered_at if thumbnail else None,
    )
