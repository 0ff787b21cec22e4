"""The JSON API, fuzzed from its own OpenAPI schema: zero 5xx.

Two passes over every operation of /openapi.json, on SQLite and PostgreSQL, with a
real bearer token and, most of the time, the token's own site:

* Schemathesis generates whole requests from the schema, valid and invalid
  (negative mode: wrong types, out-of-range values, missing fields);
* a schema-guided mutation starts from a valid request built from the schema
  (its examples and formats) and replaces one input with a hostile value (NUL and
  other control characters, lone surrogates, ids and days no column or date holds,
  very long strings), so that the hostile value reaches the code behind the
  validation of every other input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import schemathesis
from hypothesis import given, note, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.api.helpers import bearer, token_for
from tests.factories import make_account, make_site
from tests.fuzz import FAST, examples, query_text, text

API_OPERATIONS = {
    ("GET", "/api/v1/sites"),
    ("POST", "/api/v1/sites"),
    ("GET", "/api/v1/sites/{key}/stats"),
}


def test_schemathesis_finds_no_5xx_in_the_api(ctx, client):
    account = make_account(ctx)
    site = make_site(ctx, account)
    make_site(ctx, make_account(ctx), domain="elsewhere.example.com")
    auth = bearer(token_for(ctx, account))
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= API_OPERATIONS
    own_site = {"key": site.public_key}
    cases = st.one_of(
        schema.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=own_site),
        schema.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=own_site),
        schema.as_strategy(generation_mode=GenerationMode.NEGATIVE, path_parameters=own_site),
        schema.as_strategy(generation_mode=GenerationMode.POSITIVE),
        schema.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @settings(parent=FAST, max_examples=examples(120))
    @given(case=cases)
    def run(case) -> None:
        note(case.as_curl_command())
        response = case.call(headers=auth)
        case.validate_response(response, checks=[not_a_server_error])

    run()


# --- schema-guided mutation -----------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    path_params: dict[str, Any]
    query: dict[str, Any]
    body: dict[str, Any] | None

    def inputs(self) -> list[tuple[str, str]]:
        found = [("path", n) for n in self.path_params] + [("query", n) for n in self.query]
        return found + [("body", n) for n in self.body or {}]


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _valid(schema: dict[str, Any]) -> Any:
    """A value the schema accepts: its example, else one for its type and format."""
    if schema.get("examples"):
        return schema["examples"][0]
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return _valid(option)
    if schema.get("format") == "date":
        return "2026-11-01"
    return {"integer": 1, "number": 1.5, "boolean": True}.get(schema.get("type", ""), "x")


def operations_of(spec: dict[str, Any], site_key: str) -> list[Operation]:
    found = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            params = {"path": {}, "query": {}}
            for p in op.get("parameters", []):
                value = site_key if p["name"] == "key" else _valid(p["schema"])
                params[p["in"]][p["name"]] = value
            body = None
            if "requestBody" in op:
                schema = _resolve(spec, op["requestBody"]["content"]["application/json"]["schema"])
                body = {n: _valid(s) for n, s in schema["properties"].items()}
            found.append(Operation(method.upper(), path, params["path"], params["query"], body))
    return found


hostile_json = st.one_of(text, st.sampled_from(["\ud800", "blog\udfff.example.org"]))


def test_no_api_input_makes_a_5xx_whatever_the_others_hold(ctx, client):
    account = make_account(ctx)
    site = make_site(ctx, account)
    auth = bearer(token_for(ctx, account))
    operations = operations_of(client.get("/openapi.json").json(), site.public_key)
    assert {(op.method, op.path) for op in operations} >= API_OPERATIONS
    for op in operations:  # the unmutated requests are valid: mutations start from a 2xx
        response = client.request(
            op.method,
            op.path.format(**op.path_params),
            params=op.query,
            json=op.body,
            headers=auth,
        )
        assert response.status_code in (200, 201), (op, response.text)

    @settings(parent=FAST, max_examples=examples(150))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        op = data.draw(st.sampled_from([op for op in operations if op.inputs()]))
        where, name = data.draw(st.sampled_from(op.inputs()))
        path_params, query, body = dict(op.path_params), dict(op.query), dict(op.body or {})
        if where == "path":
            path_params[name] = data.draw(text.filter(lambda v: 0 < len(v) < 200))
        elif where == "query":
            query[name] = data.draw(query_text)
        else:
            body[name] = data.draw(hostile_json)
        url = op.path.format(**{k: quote(v, safe="") for k, v in path_params.items()})
        note(f"{op.method} {url} query={query!r:.300} body={body!r:.300}")
        response = client.request(
            op.method,
            url,
            params=query,
            # ASCII-escaped, as a client sends a lone surrogate ("\ud800").
            content=json.dumps(body) if op.body is not None else None,
            headers={**auth, "content-type": "application/json"},
        )
        assert response.status_code < 500, (response.status_code, response.text[:300])

    run()
