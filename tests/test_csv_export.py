"""CSV cells that a spreadsheet would run as formulas are neutralised; numbers stay numbers."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from app.csv_export import csv_stream, safe_cell


@pytest.mark.parametrize(
    "text",
    ["=1+2", "+1", "-SUM(A1:A2)", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("http://x.test")'],
)
def test_text_starting_like_a_formula_gets_a_single_quote(text):
    assert safe_cell(text) == "'" + text
    (row,) = list(csv.reader(io.StringIO("".join(csv_stream(["v"], [[text]])))))[1:]
    assert row == ["'" + text]


def test_numbers_dates_and_plain_text_are_kept():
    assert safe_cell(-3) == -3 and safe_cell(-0.5) == -0.5 and safe_cell(7) == 7
    assert safe_cell(dt.date(2026, 11, 22)) == "2026-11-22"
    assert safe_cell("#buy > a") == "#buy > a"
    assert safe_cell(None) == ""
    text = "".join(csv_stream(["n", "s", "none"], [[-3, "a-b", None]]))
    # Numbers are written bare (a spreadsheet reads them as numbers), text quoted.
    assert text.splitlines() == ['"n","s","none"', '-3,"a-b",""']


def test_rows_are_streamed_in_pieces():
    pieces = list(csv_stream(["n"], ([i] for i in range(5)), flush_rows=2))
    assert len(pieces) == 3
    assert "".join(pieces).splitlines() == ['"n"', "0", "1", "2", "3", "4"]
