"""View models for the owner's dashboard: what the template shows, already computed."""

from __future__ import annotations

from dataclasses import dataclass

from app.stats.service import CountryRow, Dashboard, DropRow, Range


@dataclass(frozen=True)
class RangeTab:
    value: str
    label: str
    href: str
    current: bool


@dataclass(frozen=True)
class CountryShare:
    code: str
    name: str
    flag: str
    visits: int
    share: str  # e.g. "42.9%": of the visitors in the selected range


@dataclass(frozen=True)
class DashboardView:
    range: Range
    tabs: list[RangeTab]
    today: int
    total: int
    in_range: int
    dropped_total: int
    countries: list[CountryShare]
    dropped: list[DropRow]
    clicks_shed: list[DropRow]

    @property
    def range_phrase(self) -> str:
        return {
            Range.TODAY: "today",
            Range.WEEK: "in the last 7 days",
            Range.MONTH: "in the last 30 days",
            Range.ALL: "since the site was added",
        }[self.range]


def format_share(part: int, whole: int) -> str:
    if whole <= 0:
        return "0%"
    percent = 100 * part / whole
    if percent >= 99.95 or percent == 0:
        return f"{percent:.0f}%"
    if percent < 0.1:
        return "<0.1%"
    return f"{percent:.1f}%"


def _share(row: CountryRow, whole: int) -> CountryShare:
    return CountryShare(row.code, row.name, row.flag, row.visits, format_share(row.visits, whole))


def range_tabs(path: str, current: Range) -> list[RangeTab]:
    return [RangeTab(r.value, r.label, f"{path}?range={r.value}", r is current) for r in Range]


def dashboard_view(dashboard: Dashboard, path: str) -> DashboardView:
    return DashboardView(
        range=dashboard.range,
        tabs=range_tabs(path, dashboard.range),
        today=dashboard.today,
        total=dashboard.total,
        in_range=dashboard.in_range,
        dropped_total=dashboard.dropped_total,
        countries=[_share(row, dashboard.in_range) for row in dashboard.countries],
        dropped=dashboard.dropped,
        clicks_shed=dashboard.clicks_shed,
    )
