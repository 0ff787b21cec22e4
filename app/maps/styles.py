"""The owner's thumbnail style: its choices, how a form's fields become one, where it is kept."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from app.clock import Clock
from app.errors import InvalidInput
from app.inputs import checkbox
from app.maps import repository as repo
from app.sites.scope import SiteScope

if TYPE_CHECKING:
    from app.maps.renderer.render import ThumbnailStyle

SIZES = ("small", "medium", "large")
BACKGROUNDS = ("light", "dark", "transparent")
_COLOR = re.compile(r"#[0-9a-f]{6}")


@dataclass(frozen=True, slots=True)
class Style:
    """The owner's thumbnail choices (validated; the renderer's ThumbnailStyle checks again)."""

    size: str = "small"
    dot_color: str = "#e11d48"
    background: str = "light"
    show_count: bool = True

    @property
    def digest(self) -> str:
        return f"{self.size},{self.dot_color},{self.background},{int(self.show_count)}"

    def for_renderer(self) -> ThumbnailStyle:
        from app.maps.renderer.render import ThumbnailStyle

        return ThumbnailStyle(
            size=self.size,
            dot_color=self.dot_color,
            background=self.background,
            show_count=self.show_count,
        )


DEFAULT_STYLE = Style()


def parse_style(size: str, dot_color: str, background: str, show_count: str) -> Style:
    """A style from form fields; InvalidInput names the first bad field."""
    size, background = size.strip().lower(), background.strip().lower()
    color = dot_color.strip().lower()
    if size not in SIZES:
        raise InvalidInput(f"size must be one of {', '.join(SIZES)}")
    if not _COLOR.fullmatch(color):
        raise InvalidInput("dot colour must be a colour like #e11d48")
    if background not in BACKGROUNDS:
        raise InvalidInput(f"background must be one of {', '.join(BACKGROUNDS)}")
    style = Style(size, color, background, checkbox(show_count, "show count"))
    try:
        style.for_renderer()
    except ValueError as exc:
        raise InvalidInput(f"this style cannot be drawn: {exc}") from exc
    return style


def current_style(session: Session, scope: SiteScope) -> Style:
    row = repo.style(session, scope)
    if row is None:
        return DEFAULT_STYLE
    return Style(row.size, row.dot_color, row.background, row.show_count)


def save_style(session: Session, clock: Clock, scope: SiteScope, style: Style) -> bool:
    """Store the style; True when it changed (and so the thumbnail must be redrawn)."""
    if current_style(session, scope) == style:
        return False
    repo.save_style(
        session,
        scope,
        size=style.size,
        dot_color=style.dot_color,
        background=style.background,
        show_count=style.show_count,
        now=clock.now(),
    )
    return True
