"""Trailing-slash redirects that never name a host.

Starlette's own ``redirect_slashes`` answers ``/sites/`` with an absolute URL built
from the request's ``Host`` header, which the client chooses: a forged ``Host``
turned Hitmap into an open redirect (and a cache poisoner behind a shared proxy).
This middleware answers the same requests with a relative ``Location``, so the
browser stays on the host it asked; the app is built with ``redirect_slashes=False``.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send


class RelativeSlashRedirect:
    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and path != "/" and path.endswith("/"):
            target = path.rstrip("/")
            # "//host" would be a protocol-relative URL: another host after all.
            local = target.startswith("/") and not target.startswith("//") and "\\" not in target
            if local and not self._matches(scope, path) and self._matches(scope, target):
                location = quote(target)
                if query := scope.get("query_string", b""):
                    location += "?" + query.decode("latin-1")
                await RedirectResponse(location, status_code=307)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _matches(self, scope: Scope, path: str) -> bool:
        probe = {**scope, "path": path}
        return any(route.matches(probe)[0] is Match.FULL for route in self.router.routes)
