"""Query parameters and headers the owner's pages and the overlay's data share.

Every query parameter is optional, so that a stranger's request fails on
authorisation, not on validation (only a control character, refused for every key
alike, answers 400 first).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from app.inputs import QueryText, Text

OptionalQuery = QueryText
RangeQuery = Annotated[Text | None, Query(alias="range")]
FromQuery = Annotated[Text | None, Query(alias="from")]
ToQuery = Annotated[Text | None, Query(alias="to")]

PRIVATE = {"Cache-Control": "private, no-store"}
