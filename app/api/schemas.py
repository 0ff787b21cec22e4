"""JSON shapes of the API under /api/v1; `hitmap stats --json` prints the same StatsOut."""

from __future__ import annotations

import datetime as dt

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from app.inputs import Text
from app.sites.scope import SiteScope
from app.sites.service import Snippet
from app.stats.service import Report


class ErrorOut(BaseModel):
    detail: str = Field(description="What was wrong, safe to show to a person.")


class SiteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: Text = Field(
        max_length=2048,
        description="The site's host name, or a pasted URL of one of its pages.",
        examples=["blog.example.org"],
    )
    name: Text | None = Field(
        default=None,
        max_length=2048,
        description="A display name; defaults to the domain. At most 100 characters.",
        examples=["My blog"],
    )


class SiteOut(BaseModel):
    key: str = Field(description="The public site key used in the snippet and in URLs.")
    name: str
    domain: str
    is_public: bool = Field(description="Whether /map/{key} is visible to everyone.")
    created_at: dt.datetime
    counter_url: str = Field(description="The counter image the snippet embeds.")
    map_url: str = Field(description="The site's map page.")

    @classmethod
    def of(cls, scope: SiteScope, base_url: str) -> SiteOut:
        return cls(
            key=scope.public_key,
            name=scope.name,
            domain=scope.domain,
            is_public=scope.is_public,
            created_at=scope.created_at,
            counter_url=f"{base_url}/c/{scope.public_key}.png",
            map_url=f"{base_url}/map/{scope.public_key}",
        )


class SnippetOut(BaseModel):
    counter_html: str = Field(description="The counter image, linked to the map page.")
    script_html: str = Field(description="The optional widget script.")
    html: str = Field(description="Both lines, ready to paste into the site's pages.")

    @classmethod
    def of(cls, snippet: Snippet) -> SnippetOut:
        return cls(
            counter_html=snippet.counter_html,
            script_html=snippet.script_html,
            html=snippet.full_html,
        )


class CreatedSiteOut(SiteOut):
    snippet: SnippetOut


class DayOut(BaseModel):
    date: dt.date
    visits: int


class CountryOut(BaseModel):
    code: str = Field(description="ISO 3166-1 alpha-2 code.", examples=["GB"])
    name: str = Field(examples=["United Kingdom"])
    visits: int


class DroppedOut(BaseModel):
    reason: str = Field(description="Why hits were not counted.", examples=["bot"])
    hits: int


class StatsOut(BaseModel):
    """Unique daily visits in an inclusive UTC date range."""

    site: SiteOut
    from_: dt.date = Field(
        serialization_alias="from",
        validation_alias=AliasChoices("from", "from_"),
        description="First day of the range (UTC).",
    )
    to: dt.date = Field(description="Last day of the range (UTC), inclusive.")
    total: int = Field(description="Unique daily visits in the range.")
    all_time: int = Field(description="Unique daily visits ever recorded.")
    per_day: list[DayOut] = Field(description="Every day of the range, oldest first.")
    countries: list[CountryOut] = Field(description="Visits per country, most first.")
    dropped: list[DroppedOut] = Field(description="Hits not counted in the range, by reason.")

    @classmethod
    def of(cls, scope: SiteScope, report: Report, base_url: str) -> StatsOut:
        return cls(
            site=SiteOut.of(scope, base_url),
            from_=report.start,
            to=report.end,
            total=report.total,
            all_time=report.all_time,
            per_day=[DayOut(date=day, visits=n) for day, n in report.per_day],
            countries=[
                CountryOut(code=c.code, name=c.name, visits=c.visits) for c in report.countries
            ],
            dropped=[DroppedOut(reason=d.reason, hits=d.hits) for d in report.dropped],
        )

    def to_json_dict(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)
