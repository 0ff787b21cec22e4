"""Site statistics for the dashboard, the public page, the API and the CLI."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy.orm import Session

from app.clock import Clock, utc_today
from app.days import DayRange
from app.errors import InvalidInput
from app.heatmaps.budgets import SHED_LABELS, ShedReason
from app.ingest.pipeline import DROP_LABELS, DropReason
from app.sites.scope import SiteScope
from app.stats import repository
from app.stats.countries import country_flag, country_name

MAX_RANGE_DAYS = 3660


class Range(StrEnum):
    TODAY = "today"
    WEEK = "7d"
    MONTH = "30d"
    ALL = "all"

    @property
    def label(self) -> str:
        return {"today": "Today", "7d": "7 days", "30d": "30 days", "all": "All time"}[self.value]

    def days(self, today: dt.date) -> DayRange:
        span = {"today": 0, "7d": 6, "30d": 29}.get(self.value)
        return DayRange() if span is None else DayRange(today - dt.timedelta(days=span), today)


def parse_range(value: str | None) -> Range:
    try:
        return Range(value or Range.MONTH.value)
    except ValueError as exc:
        allowed = ", ".join(r.value for r in Range)
        raise InvalidInput(f"unknown range {value!r}; use one of {allowed}") from exc


@dataclass(frozen=True)
class CountryRow:
    code: str
    name: str
    flag: str
    visits: int


@dataclass(frozen=True)
class CityRow:
    city: str
    country_code: str
    country: str
    flag: str
    visits: int


@dataclass(frozen=True)
class DropRow:
    reason: str
    label: str
    hits: int


@dataclass(frozen=True)
class Dashboard:
    range: Range
    today: int
    total: int
    in_range: int
    countries: list[CountryRow]
    dropped: list[DropRow] = field(default_factory=list)
    clicks_shed: list[DropRow] = field(default_factory=list)  # heatmap clicks, not hits

    @property
    def dropped_total(self) -> int:
        return sum(d.hits for d in self.dropped)


def _countries(rows: list[tuple[str, int]]) -> list[CountryRow]:
    return [CountryRow(c, country_name(c), country_flag(c), n) for c, n in rows]


def _drop_label(reason: str) -> str:
    try:
        return DROP_LABELS[DropReason(reason)]
    except ValueError:
        return reason.replace("_", " ").capitalize()


CLICK_REASONS = frozenset(r.value for r in ShedReason)


def _drops(
    session: Session, scope: SiteScope, days: DayRange
) -> tuple[list[DropRow], list[DropRow]]:
    """Counter hits dropped, and heatmap clicks shed: both are counted in ``dropped_hits``,
    but they are different things and never added up."""
    hits, clicks = [], []
    for reason, n in repository.dropped_per_reason(session, scope, days):
        if reason in CLICK_REASONS:
            clicks.append(DropRow(reason, SHED_LABELS[ShedReason(reason)], n))
        else:
            hits.append(DropRow(reason, _drop_label(reason), n))
    return hits, clicks


def dashboard(session: Session, clock: Clock, scope: SiteScope, range_: Range) -> Dashboard:
    today = utc_today(clock)
    days = range_.days(today)
    dropped, clicks_shed = _drops(session, scope, days)
    return Dashboard(
        range=range_,
        today=repository.unique_visits(session, scope, DayRange.day(today)),
        total=repository.unique_visits(session, scope, DayRange()),
        in_range=repository.unique_visits(session, scope, days),
        countries=_countries(repository.visits_per_country(session, scope, days, limit=25)),
        dropped=dropped,
        clicks_shed=clicks_shed,
    )


@dataclass(frozen=True)
class PublicSummary:
    total: int
    countries: list[CountryRow]
    cities: list[CityRow]


def public_summary(session: Session, scope: SiteScope, limit: int = 20) -> PublicSummary:
    everything = DayRange()
    return PublicSummary(
        total=repository.unique_visits(session, scope, everything),
        countries=_countries(repository.visits_per_country(session, scope, everything, limit)),
        cities=[
            CityRow(city, code, country_name(code), country_flag(code), n)
            for code, city, n in repository.visits_per_city(session, scope, everything, limit)
        ],
    )


@dataclass(frozen=True)
class Report:
    """Totals, per day and per country for an inclusive date range (API and CLI)."""

    start: dt.date
    end: dt.date
    total: int
    all_time: int
    per_day: list[tuple[dt.date, int]]
    countries: list[CountryRow]
    dropped: list[DropRow]


def check_dates(start: dt.date, end: dt.date) -> None:
    if start > end:
        raise InvalidInput("the start date is after the end date")
    if (end - start).days > MAX_RANGE_DAYS:
        raise InvalidInput(f"a date range may span at most {MAX_RANGE_DAYS} days")


def report(session: Session, scope: SiteScope, start: dt.date, end: dt.date) -> Report:
    check_dates(start, end)
    days = DayRange(start, end)
    counted = dict(repository.visits_per_day(session, scope, days))
    per_day = [
        (start + dt.timedelta(days=i), counted.get(start + dt.timedelta(days=i), 0))
        for i in range((end - start).days + 1)
    ]
    return Report(
        start=start,
        end=end,
        total=sum(n for _, n in per_day),
        all_time=repository.unique_visits(session, scope, DayRange()),
        per_day=per_day,
        countries=_countries(repository.visits_per_country(session, scope, days)),
        dropped=_drops(session, scope, days)[0],
    )
