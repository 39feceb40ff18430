"""The building blocks of the OpenAPI document (openapi.py): schema,
parameter, body and response helpers, and the names the document repeats."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Schema = dict[str, Any]
Operation = dict[str, Any]

PATH = "/v2/openapi.json"
JSON = "application/json"
JSON_HOME = "application/json-home"
JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"
EXTENSION = "x-tidings-extension"
QUEUE = "/v2/queues/{queue_name}"
TOPIC = "/v2/topics/{topic_name}"
NAME_PATTERN = "^[a-zA-Z0-9_.-]+$"
INT32_MAX = 2**31 - 1


# --- schema helpers ---------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def integer(low: int | None = None, high: int | None = None, description: str = "",
            nullable: bool = False) -> Schema:
    schema: Schema = {"type": ["integer", "null"] if nullable else "integer"}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    if description:
        schema["description"] = description
    return schema


def string(description: str = "", **keywords: Any) -> Schema:
    schema: Schema = {"type": "string", **keywords}
    if description:
        schema["description"] = description
    return schema


def array(items: Schema, **keywords: Any) -> Schema:
    return {"type": "array", "items": items, **keywords}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (),
        additional: bool | Schema = True, **keywords: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties,
                      "additionalProperties": additional, **keywords}
    if required:
        schema["required"] = list(required)
    return schema


def links() -> Schema:
    return array(obj({"rel": string(), "href": string()}, ("rel", "href")),
                 description="Paging: a `next` link on every non-empty page.")


# --- parameter, body and response helpers ------------------------------------------


def path_param(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or string(minLength=1)}


def query(name: str, schema: Schema, description: str = "", extension: bool = False
          ) -> Schema:
    param: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    if extension:
        param[EXTENSION] = True
    return param


def header_ref(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def body(schema: Schema, required: bool = True, media: str = JSON, description: str = ""
         ) -> Schema:
    document: Schema = {"required": required, "content": {media: {"schema": schema}}}
    if description:
        document["description"] = description
    return document


def ok(description: str, schema: Schema | None = None, media: str = JSON,
       headers: dict[str, Any] | None = None) -> Schema:
    response: Schema = {"description": description}
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    if headers:
        response["headers"] = headers
    return response


ERROR_DESCRIPTIONS = {
    400: "Invalid request: a header, parameter or body value is wrong.",
    401: "Not authenticated (Keystone auth only).",
    403: "Forbidden by the policy, or a claimed message deleted without its claim.",
    404: "Not found.",
    409: "Conflict.",
    413: "Request entity too large.",
    415: "Unsupported media type.",
    429: "Too many requests: the project's rate limit (quotas) is reached; see Retry-After.",
    503: "The storage backend is unreachable, or the feature is not configured.",
}


def errors(*codes: int) -> dict[str, Schema]:
    return {str(code): {"$ref": f"#/components/responses/Error{code}"} for code in codes}


LOCATION = {"Location": {"description": "The path of the resource.",
                         "schema": string()}}


def operation(summary: str, op_id: str, responses: dict[str, Schema], *,
              params: Sequence[Schema] = (), request: Schema | None = None,
              headers: bool = True, extension: bool = False, description: str = "",
              error_codes: tuple[int, ...] = (400, 401, 403, 503)) -> Operation:
    """One operation: the identifying headers (unless ``headers`` is False),
    its own parameters, and the common error responses."""
    op: Operation = {"summary": summary, "operationId": op_id}
    if description:
        op["description"] = description
    parameters = list(params)
    if headers:
        parameters = [header_ref("ClientID"), header_ref("ProjectID"), *parameters]
    if parameters:
        op["parameters"] = parameters
    if request is not None:
        op["requestBody"] = request
    if headers and error_codes:
        error_codes = (*error_codes, 429)  # any /v2 request, when rate limits are on
    op["responses"] = {**responses, **errors(*error_codes)}
    if extension:
        op[EXTENSION] = True
    return op
