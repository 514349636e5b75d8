"""The OpenAPI document and the app agree: the same routes and methods, every error code; and
schemathesis finds no 5xx and no response outside the document, on every route and error path."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, settings

from mccf_backup import errors

from .contract import DOCUMENT, contract

schema = contract()


def app_routes() -> set[tuple[str, str]]:
    from function_app import app
    from devhost.devserver import functions_of

    routes = set()
    for function in functions_of(app):
        trigger = function.get_trigger().get_dict_repr()
        if trigger.get("type") == "httpTrigger":
            for method in trigger["methods"]:
                routes.add((str(getattr(method, "value", method)).lower(), "/" + trigger["route"]))
    return routes


def test_the_document_describes_exactly_the_app_routes():
    documented = {(method, path) for path, item in DOCUMENT["paths"].items() for method in item}
    assert documented == app_routes()
    for item in DOCUMENT["paths"].values():
        for operation in item.values():
            assert re.fullmatch(r"[A-Z][A-Za-z]+", operation["operationId"]) and operation["summary"]


def test_every_error_code_is_in_the_document():
    assert set(DOCUMENT["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]) == {
        e.code for e in errors.ALL_ERRORS
    }


def test_the_app_serves_the_document_naming_itself_as_the_server(api, devserver):
    response = api("GET", "openapi.json", headers={"Host": "evil.example"})
    assert response.status_code == 200
    served = response.json()
    assert served.pop("servers") == [{"url": f"{devserver.url}/api", "description": "this deployment"}]
    assert served == {name: value for name, value in DOCUMENT.items() if name != "servers"}


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_and_never_answers_5xx(case, schemathesis_env):
    url, headers = schemathesis_env
    if case.query and "code" in case.query:
        case.query["code"] = headers["x-functions-key"]  # the function key is a credential, not an input to fuzz
    case.call_and_validate(base_url=f"{url}/api", headers=headers)
