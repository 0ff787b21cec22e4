"""Helpers for the heatmap tests: send click batches as the widget does, read them back."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.context import AppContext
from app.models import HeatmapClick, HeatmapPage
from app.sites.scope import SiteScope

ORIGIN = "https://blog.example.org"


def click(
    x: float = 640,
    y: float = 300,
    *,
    w: float = 1400,
    h: float = 3000,
    v: float = 1400,
    r: float = 1,
    s: str | None = "#buy",
    ox: float = 0.25,
    oy: float = 0.5,
) -> dict[str, Any]:
    item: dict[str, Any] = {"x": x, "y": y, "w": w, "h": h, "v": v, "r": r}
    if s is not None:
        item.update(s=s, ox=ox, oy=oy)
    return item


def batch(*clicks: dict[str, Any], path: str = "/pricing") -> dict[str, Any]:
    return {"p": path, "c": list(clicks) or [click()]}


def send(
    client: TestClient,
    key: str,
    body: dict[str, Any] | bytes | str,
    *,
    origin: str | None = ORIGIN,
    headers: dict[str, str] | None = None,
):
    """POST a batch the way navigator.sendBeacon does: text/plain, Origin of the page."""
    if isinstance(body, dict):
        data = json.dumps(body).encode()
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body
    h = {"content-type": "text/plain;charset=UTF-8", **(headers or {})}
    if origin is not None:
        h["origin"] = origin
    return client.post(f"/b/{key}", content=data, headers=h)


def stored_clicks(ctx: AppContext, scope: SiteScope) -> list[HeatmapClick]:
    with ctx.db.session() as session:
        return list(
            session.scalars(
                select(HeatmapClick)
                .where(HeatmapClick.site_id == scope.site_id)
                .order_by(HeatmapClick.id)
            )
        )


def click_count(ctx: AppContext, scope: SiteScope | None = None) -> int:
    stmt = select(func.count()).select_from(HeatmapClick)
    if scope is not None:
        stmt = stmt.where(HeatmapClick.site_id == scope.site_id)
    with ctx.db.session() as session:
        return int(session.scalar(stmt) or 0)


def stored_pages(ctx: AppContext, scope: SiteScope) -> dict[str, str]:
    with ctx.db.session() as session:
        rows = session.scalars(select(HeatmapPage).where(HeatmapPage.site_id == scope.site_id))
        return {r.path: r.origin for r in rows}
