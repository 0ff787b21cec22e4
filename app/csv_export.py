"""CSV downloads that a spreadsheet opens as data, never as formulas.

A cell such as ``=HYPERLINK(...)`` or ``-SUM(A1:A2)`` in a downloaded file is run
by Excel, LibreOffice and Google Sheets when the owner opens it, and visitors
choose some of what Hitmap exports (a click's selector). Following OWASP's "CSV
Injection" advice, a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return gets a leading single quote, and every text cell is quoted.
Numbers stay numbers (unquoted, never prefixed): a negative count is not a formula.
Every CSV export goes through :func:`csv_stream`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FLUSH_ROWS = 1000


def safe_cell(value: object) -> object:
    """The value as written: numbers as they are, dates as ISO text, text neutralised."""
    if value is None or isinstance(value, bool):
        return "" if value is None else str(value).lower()
    if isinstance(value, int | float):
        return value
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_stream(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, flush_rows: int = FLUSH_ROWS
) -> Iterator[str]:
    """The rows as CSV text, in pieces of ``flush_rows`` rows (for a streamed download)."""
    buffer = io.StringIO()
    # QUOTE_NONNUMERIC: every text cell in quotes, numbers bare.
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([safe_cell(name) for name in header])
    for i, row in enumerate(rows, 1):
        writer.writerow([safe_cell(v) for v in row])
        if i % flush_rows == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
