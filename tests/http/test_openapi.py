"""The OpenAPI document (transport/http/openapi.py) is valid and true to the
routes the app really has; it is served at /v2/openapi.json without headers."""

from __future__ import annotations

import re
from typing import Any

import falcon.inspect
import httpx
import jsonschema
import pytest

from tidings.api.context import Service
from tidings.config import Limits
from tidings.transport.http import openapi
from tidings.transport.http.app import create_http_app, routes

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
DOCUMENT = openapi.build(Limits())


def documented() -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in DOCUMENT["paths"].items()
            for method in item if method in METHODS}


def app_routes() -> set[tuple[str, str]]:
    """(template, method) of every responder the app defines itself:
    Falcon's own OPTIONS and 405 responders and WebSocket are left out."""
    app = create_http_app(Service(storage=None, limits=Limits()))  # type: ignore[arg-type]
    found = set()
    for route in falcon.inspect.inspect_app(app).routes:
        for method in route.methods:
            if not method.internal and method.method != "WEBSOCKET":
                found.add((route.path, method.method))
    return found


def test_every_route_and_method_is_documented() -> None:
    missing = app_routes() - documented()
    assert not missing, sorted(missing)


def test_every_documented_operation_exists() -> None:
    extra = documented() - app_routes()
    assert not extra, sorted(extra)


def test_the_routes_function_agrees_with_the_app() -> None:
    """routes() and the app's router list the same templates and responders."""
    service = Service(storage=None, limits=Limits())  # type: ignore[arg-type]
    from_routes = {
        (path, name[3:].upper())
        for path, resource in routes(service)
        for name in dir(resource)
        if name.startswith("on_") and name != "on_websocket"
    }
    assert from_routes == app_routes()


def test_the_document_is_valid_openapi_3_1() -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_31

    jsonschema.Draft202012Validator(OPENAPI_31).validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1")
    for name, schema in DOCUMENT["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_every_reference_resolves() -> None:
    for target in _refs(DOCUMENT):
        assert target.startswith("#/"), target
        node: Any = DOCUMENT
        for part in target[2:].split("/"):
            assert part in node, target
            node = node[part]


def _parameters(item: dict[str, Any], op: dict[str, Any]) -> list[dict[str, Any]]:
    params = []
    for param in [*item.get("parameters", []), *op.get("parameters", [])]:
        if "$ref" in param:
            param = DOCUMENT["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]]
        params.append(param)
    return params


def test_operations_are_well_formed() -> None:
    ids = []
    for path, item in DOCUMENT["paths"].items():
        template_vars = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            if method not in METHODS:
                continue
            ids.append(op["operationId"])
            params = _parameters(item, op)
            in_path = {p["name"] for p in params if p["in"] == "path"}
            assert in_path == template_vars, (path, method)
            headers = {p["name"] for p in params if p["in"] == "header" and p["required"]}
            if path.startswith("/v2") and path != openapi.PATH:
                assert headers == {"Client-ID", "X-Project-ID"}, (path, method)
            else:
                assert not headers, (path, method)
            statuses = set(op["responses"])
            assert any(s.startswith("2") or s == "300" for s in statuses), (path, method)
            for status, response in op["responses"].items():
                if path == "/readyz" and status == "503":
                    continue  # a probe's one-line reason, not a Zaqar error body
                if status[0] in "45":
                    assert response["$ref"] == f"#/components/responses/Error{status}"
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_limits_come_from_the_configuration() -> None:
    limits = Limits(max_message_ttl=7200, max_messages_per_page=5)
    schemas = openapi.build(limits)["components"]["schemas"]
    assert schemas["NewMessage"]["properties"]["ttl"]["maximum"] == 7200
    default = DOCUMENT["components"]["schemas"]
    assert default["NewMessage"]["properties"]["ttl"] == {
        "type": "integer", "minimum": 60, "maximum": 1_209_600,
        "description": "Seconds the message lives."}
    assert default["NewMessage"]["properties"]["delay"]["maximum"] == 900
    assert default["ClaimRequest"]["properties"]["ttl"]["minimum"] == 60
    assert default["ClaimRequest"]["properties"]["grace"]["maximum"] == 43_200


def test_extensions_are_marked() -> None:
    paths = DOCUMENT["paths"]
    assert paths[openapi.PATH]["get"][openapi.EXTENSION] is True
    assert paths["/v2/topics"]["get"][openapi.EXTENSION] is True
    deliveries = paths["/v2/queues/{queue_name}/subscriptions/{subscription_id}/deliveries"]
    assert deliveries["get"][openapi.EXTENSION] is True
    assert openapi.EXTENSION not in paths["/v2/queues/{queue_name}/messages"]["post"]


@pytest.mark.parametrize("headers", [{}, {"X-Project-ID": "p"}])
def test_served_without_identifying_headers(server_url: str, headers: dict[str, str]
                                            ) -> None:
    resp = httpx.get(server_url + "/v2/openapi.json", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == DOCUMENT


def test_only_get_is_allowed(server_url: str) -> None:
    resp = httpx.post(server_url + "/v2/openapi.json", timeout=10)
    assert resp.status_code == 405
