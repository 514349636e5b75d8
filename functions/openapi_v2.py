"""The API as OpenAPI 2.0, derived from ``openapi.json`` (3.0.3), the one document anyone edits.

Logic Apps' HTTP + Swagger action and trigger, and custom connectors, import only OpenAPI 2.0
(Microsoft Learn, "Call REST endpoints from workflows in Azure Logic Apps", Limitations), so the
app serves both; deriving one from the other means they can never disagree. What 2.0 cannot say is
translated, not dropped silently: a request body becomes a ``body`` parameter, ``nullable``
becomes ``x-nullable`` (AutoRest's and the connectors' extension), ``not`` (which 2.0 lacks)
moves into the schema's description, and the media types move to ``consumes``/``produces``.
The long-running operations keep their 202 with ``Location`` and ``Retry-After``: the HTTP +
Swagger action and custom connectors follow that pattern natively (they poll ``Location`` while
the answer is 202). Every parameter gets the ``x-ms-summary`` a designer shows as its title.
"""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import urlsplit

REFS = {
    "#/components/schemas/": "#/definitions/",
    "#/components/parameters/": "#/parameters/",
    "#/components/responses/": "#/responses/",
}
# Keywords a 2.0 non-body parameter or header takes from its 3.0 schema.
SIMPLE_KEYWORDS = (
    "type",
    "format",
    "items",
    "default",
    "maximum",
    "minimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "enum",
)


def title(name: str) -> str:
    """``containsTxid`` -> ``Contains Txid``; ``Idempotency-Key`` -> ``Idempotency Key``."""
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("-", " ").replace("_", " ").split()
    return " ".join(word[:1].upper() + word[1:] for word in words)


def _refs(node: Any) -> Any:
    """Rewrite every 3.0 ``$ref`` to where 2.0 keeps the same object."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                for old, new in REFS.items():
                    value = value.replace(old, new)
            out[key] = _refs(value)
        return out
    if isinstance(node, list):
        return [_refs(item) for item in node]
    return node


def schema(node: Any) -> Any:
    """A 3.0 schema as 2.0 reads it."""
    if isinstance(node, list):
        return [schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "nullable":
            out["x-nullable"] = value
        elif key == "not":
            rule = " or ".join(" and ".join(sorted(branch["required"])) for branch in value.get("anyOf", []))
            note = f"Never more than one of the combinations: {rule}." if rule else "See the OpenAPI 3 document."
            out["description"] = (node.get("description", "") + " " + note).strip()
        elif key == "description" and "not" in node:
            continue  # merged above
        elif key in ("properties", "definitions"):
            out[key] = {name: schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "allOf"):
            out[key] = schema(value)
        else:
            out[key] = value
    return out


def _parameter(parameter: dict) -> dict:
    if "$ref" in parameter:
        return parameter
    out = {k: v for k, v in parameter.items() if k not in ("schema", "example")}
    sub = schema(parameter.get("schema", {}))
    out.update({k: sub[k] for k in SIMPLE_KEYWORDS if k in sub})
    if "description" not in out and "description" in sub:
        out["description"] = sub["description"]
    if sub.get("x-nullable"):
        out["x-nullable"] = True
    out.setdefault("x-ms-summary", title(parameter["name"]))
    return out


def _response(response: dict, produces: set[str]) -> dict:
    if "$ref" in response:
        return response
    out: dict[str, Any] = {"description": response.get("description", "")}
    for media, content in (response.get("content") or {}).items():
        produces.add(media)
        if "schema" in content and "schema" not in out:
            out["schema"] = schema(content["schema"])
        if "example" in content:
            out.setdefault("examples", {})[media] = content["example"]
    if response.get("headers"):
        out["headers"] = {}
        for name, header in response["headers"].items():
            converted = {k: v for k, v in schema(header.get("schema", {})).items() if k in SIMPLE_KEYWORDS}
            converted["description"] = header.get("description", "")
            out["headers"][name] = converted
    return out


def _operation(operation: dict) -> dict:
    out = {k: v for k, v in operation.items() if k not in ("parameters", "requestBody", "responses")}
    parameters = [_parameter(p) for p in operation.get("parameters", [])]
    body = operation.get("requestBody")
    if body:
        ((media, content),) = body["content"].items()
        out["consumes"] = [media]
        parameters.append(
            {
                "name": "body",
                "in": "body",
                "required": body.get("required", False),
                "description": body.get("description", "The request, as JSON."),
                "x-ms-summary": "Request",
                "schema": schema(content["schema"]),
            }
        )
    if parameters:
        out["parameters"] = parameters
    produces: set[str] = set()
    out["responses"] = {code: _response(response, produces) for code, response in operation["responses"].items()}
    out["produces"] = sorted(produces | {"application/problem+json"})
    return out


def _security_scheme(scheme: dict) -> dict:
    """2.0 has no bearer scheme: a bearer token is an API key in the Authorization header there."""
    if scheme.get("type") == "http" and scheme.get("scheme") == "bearer":
        converted = {"type": "apiKey", "in": "header", "name": "Authorization"}
        return {**converted, **({"description": scheme["description"]} if "description" in scheme else {})}
    return scheme


def to_swagger2(document: dict, origin: str | None = None) -> dict:
    """The 2.0 document for ``document`` (3.0.3), served from ``origin`` (this deployment) when known."""
    source = copy.deepcopy(document)
    components = source.get("components", {})
    server = urlsplit(origin) if origin else None
    swagger: dict[str, Any] = {"swagger": "2.0", "info": source["info"]}
    if server:  # the origin may carry a path (PUBLIC_BASE_URL behind a front door): the API is under it
        swagger["host"], swagger["schemes"] = server.netloc, [server.scheme]
    swagger["basePath"] = (server.path.rstrip("/") if server else "") + "/api"
    swagger["consumes"], swagger["produces"] = ["application/json"], ["application/json"]
    swagger["securityDefinitions"] = {
        name: _security_scheme(scheme) for name, scheme in components.get("securitySchemes", {}).items()
    }
    swagger["security"] = source.get("security", [])
    swagger["paths"] = {
        path: {method: _operation(op) for method, op in item.items()} for path, item in source["paths"].items()
    }
    swagger["definitions"] = {name: schema(sub) for name, sub in components.get("schemas", {}).items()}
    swagger["parameters"] = {name: _parameter(p) for name, p in components.get("parameters", {}).items()}
    swagger["responses"] = {name: _response(r, set()) for name, r in components.get("responses", {}).items()}
    return _refs(swagger)
