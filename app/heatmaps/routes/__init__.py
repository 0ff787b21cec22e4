"""Heatmap routes: the click beacon, the live overlay's script and data, the owner's pages.

One module each (``beacon``, ``overlay``, ``pages``), one router for ``app.main``.

* ``POST /b/{key}`` — the widget's batch of clicks (``text/plain`` JSON, no CORS
  preflight). 204 when stored (or deliberately not recorded: Do Not Track), 400
  with a short reason when anything in the batch is invalid or it comes from a
  page on a foreign host (nothing is stored), 404 for an unknown key and for a
  request that names no page at all (no ``Origin``, no ``Referer``): a stranger.
* ``GET /overlay.js`` and ``GET|OPTIONS /o/{key}/clicks`` — the live overlay; the
  data needs an overlay token of that very site and answers CORS only to pages
  on the site's hostnames.
* ``/sites/{key}/heatmaps…`` — the owner's pages, downloads and forms; every one
  goes through ``authz.owned_site`` first (404 to anyone else), and every query
  parameter is optional so that a stranger's request fails on authorisation,
  not on validation (only a control character, refused for every key alike,
  answers 400 first).
"""

from __future__ import annotations

from fastapi import APIRouter

from app.heatmaps.routes import beacon, overlay, pages

router = APIRouter()
for part in (beacon, overlay, pages):
    router.include_router(part.router)
