"""The OpenAPI document and a /docs page that loads nothing from another host."""

from __future__ import annotations

import base64
import hashlib
import re


def test_docs_page_uses_only_local_assets(client):
    response = client.get("/docs", headers={"accept": "text/html"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    urls = re.findall(r'(?:src|href)="([^"]*)"', html) + re.findall(r"url: '([^']*)'", html)
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls)
    assert any(u.endswith("swagger-ui.css") for u in urls)
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        assert client.get(url).status_code == 200, url


def test_docs_csp_allows_only_its_own_inline_script(client):
    response = client.get("/docs", headers={"accept": "text/html"})
    csp = response.headers["content-security-policy"]

    assert "http" not in csp and "*" not in csp and "unsafe" not in csp
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    (inline,) = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}'" in csp


def test_other_pages_keep_the_strict_csp(client):
    csp = client.get("/", headers={"accept": "text/html"}).headers["content-security-policy"]
    assert "sha256" not in csp and "script-src 'self';" in csp


def test_docs_assets_are_limited_to_swagger_files(client):
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs/assets/swagger-ui-bundle.js.map").status_code == 404
    assert client.get("/docs/assets/..%2F__init__.py").status_code == 404


def test_openapi_lists_the_api_with_bearer_auth(client):
    spec = client.get("/openapi.json").json()

    paths = spec["paths"]
    assert set(paths["/api/v1/sites"]) == {"get", "post"}
    assert set(paths["/api/v1/sites/{key}/stats"]) == {"get"}
    assert "/docs" not in paths and not any(p.startswith("/docs/") for p in paths)
    stats_params = {p["name"] for p in paths["/api/v1/sites/{key}/stats"]["get"]["parameters"]}
    assert stats_params == {"key", "from", "to"}
    scheme = spec["components"]["securitySchemes"]["ApiToken"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert paths["/api/v1/sites"]["get"]["security"] == [{"ApiToken": []}]
    stats = spec["components"]["schemas"]["StatsOut"]["properties"]
    assert {"site", "from", "to", "total", "all_time", "per_day", "countries", "dropped"} <= set(
        stats
    )
