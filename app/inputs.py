"""The rules every value from a request obeys before any route or service sees it.

* **Text** never holds control characters (C0 such as NUL, tab and line breaks, DEL,
  C1), Unicode line or paragraph separators, or lone surrogates. None belongs in
  an email, a name, a hostname or a query parameter; PostgreSQL refuses NUL in
  text (a driver error, a 500), SQLite stores it verbatim (look-alike accounts),
  and a lone surrogate cannot even be encoded for either database.
* **Row ids** are whole numbers a BIGINT column (SQLite: INTEGER) can hold:
  1 to 2**63 - 1. A larger one overflows the driver (a 500) and can name nothing.
* **Days** lie between 2000-01-01 and 9998-12-31: no visit predates the service,
  and a year of margin keeps every ``day ± timedelta`` of the stats, heatmaps and
  maps code away from ``date.min``/``date.max`` (an OverflowError, a 500).

(One text input is exempt: the login's ``next``, which ``safe_next_path`` replaces
with the default page when it holds a control character.)

Routes declare their inputs with the types below (``FormText``, ``QueryText``,
``RowIdPath``, ``Day``; ``Text`` inside pydantic models), so a bad value is
refused by FastAPI's validation with a sentence (400 on pages, 422 in the API)
before anything is read or written. Services that parse text themselves (a date
in a query string) use the ``check_*`` helpers, which raise ``InvalidInput``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import Form, Path, Query
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from app.errors import InvalidInput

# C0 controls, DEL and C1 controls; U+2028/U+2029 (line and paragraph separators);
# lone surrogates (JSON's "\ud800" decodes to one; no UTF-8 encoder accepts it).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

MAX_ROW_ID = 2**63 - 1
FIRST_DAY = dt.date(2000, 1, 1)
LAST_DAY = dt.date(9998, 12, 31)
DAY_RANGE_MESSAGE = f"use a day from {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}"
ROW_ID_MESSAGE = f"not an id: ids are whole numbers from 1 to {MAX_ROW_ID}"


def control_character_problem(value: str) -> str | None:
    """Why ``value`` is refused as text, or None when it is fine."""
    found = _FORBIDDEN.search(value)
    if found is None:
        return None
    return (
        f"contains a control character (U+{ord(found.group()):04X}); "
        "remove it and type the value again"
    )


def check_text(value: str, name: str) -> str:
    """``value`` unchanged, or InvalidInput naming the field ``name``."""
    problem = control_character_problem(value)
    if problem is not None:
        raise InvalidInput(f"{name}: {problem}")
    return value


# What an HTML checkbox sends when ticked (its ``value``, "on" without one) or what a
# hand-written request may say; an unticked box sends nothing (the route's default "").
CHECKED = frozenset({"1", "on", "true"})
UNCHECKED = frozenset({"", "0", "off", "false"})


def checkbox(value: str, name: str) -> bool:
    """A form's checkbox as a bool; any other value is refused rather than guessed."""
    if value in CHECKED:
        return True
    if value in UNCHECKED:
        return False
    raise InvalidInput(f"{name} must be on or off")


def check_day(day: dt.date, name: str) -> dt.date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidInput(f"{name}: {DAY_RANGE_MESSAGE}")
    return day


# --- pydantic validators (messages become FastAPI's field errors) ---------------------


def _plain_text(value: str) -> str:
    problem = control_character_problem(value)
    if problem is not None:
        raise PydanticCustomError("control_character", problem)
    return value


def _row_id(value: int) -> int:
    if not 1 <= value <= MAX_ROW_ID:
        raise PydanticCustomError("row_id_range", ROW_ID_MESSAGE)
    return value


def _day(value: dt.date) -> dt.date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise PydanticCustomError("day_range", DAY_RANGE_MESSAGE)
    return value


Text = Annotated[str, AfterValidator(_plain_text)]
RowId = Annotated[int, AfterValidator(_row_id)]
Day = Annotated[dt.date, AfterValidator(_day)]

# A field of an HTML form; an optional query parameter; an id in a path.
FormText = Annotated[Text, Form()]
QueryText = Annotated[Text | None, Query()]
RowIdPath = Annotated[RowId, Path()]
