"""The OpenAPI 2.0 document Logic Apps imports: valid 2.0, derived from the one 3.0 document, with
exactly the app's routes, operations and error codes, and what a designer needs to show each action."""

from __future__ import annotations

import re

from openapi_spec_validator import OpenAPIV2SpecValidator, validate

from functions.openapi_v2 import to_swagger2
from mccf_backup import errors

from .contract import DOCUMENT
from .test_openapi import app_routes

SWAGGER = to_swagger2(DOCUMENT, "https://mccf-backup.azurewebsites.net")
ASYNC_OPERATIONS = {"StartBackup", "VerifyBackup", "StartRestore", "GetOperation"}


def operations(document: dict) -> dict[str, tuple[str, str, dict]]:
    return {
        op["operationId"]: (method, path, op) for path, item in document["paths"].items() for method, op in item.items()
    }


def test_it_is_valid_openapi_2():
    validate(SWAGGER, cls=OpenAPIV2SpecValidator)
    assert SWAGGER["swagger"] == "2.0" and SWAGGER["host"] == "mccf-backup.azurewebsites.net"
    assert SWAGGER["basePath"] == "/api" and SWAGGER["schemes"] == ["https"]


def test_it_lists_exactly_the_app_routes_with_the_same_operations_as_the_3_0_document():
    assert {(method, path) for path, item in SWAGGER["paths"].items() for method in item} == app_routes()
    assert {k: (m, p) for k, (m, p, _) in operations(SWAGGER).items()} == {
        k: (m, p) for k, (m, p, _) in operations(DOCUMENT).items()
    }
    for operation_id, (_, _, operation) in operations(SWAGGER).items():
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", operation_id) and operation["summary"]
        assert operation["x-ms-visibility"] in {"important", "advanced", "internal"}
        for parameter in operation.get("parameters", []):
            resolved = SWAGGER["parameters"][parameter["$ref"].rsplit("/", 1)[1]] if "$ref" in parameter else parameter
            assert resolved["x-ms-summary"], (operation_id, resolved)


def test_every_error_code_and_every_status_is_kept():
    assert set(SWAGGER["definitions"]["Problem"]["properties"]["code"]["enum"]) == {e.code for e in errors.ALL_ERRORS}
    for operation_id, (_, _, operation) in operations(DOCUMENT).items():
        converted = operations(SWAGGER)[operation_id][2]
        assert set(converted["responses"]) == set(operation["responses"]), operation_id
        assert "application/problem+json" in converted["produces"]


def test_long_work_answers_202_with_location_and_retry_after_as_logic_apps_polls():
    for operation_id in ASYNC_OPERATIONS:
        accepted = operations(SWAGGER)[operation_id][2]["responses"]["202"]
        assert set(accepted["headers"]) == {"Location", "Retry-After"}
        assert accepted["headers"]["Retry-After"]["type"] == "integer"
        assert accepted["schema"] == {"$ref": "#/definitions/Operation"}


def test_request_bodies_become_body_parameters_and_nothing_3_0_is_left():
    for operation_id, (_, _, operation) in operations(DOCUMENT).items():
        bodies = [p for p in operations(SWAGGER)[operation_id][2].get("parameters", []) if p.get("in") == "body"]
        assert len(bodies) == ("requestBody" in operation), operation_id
    text = str(SWAGGER)
    assert "#/components/" not in text and "'nullable'" not in text and "'requestBody'" not in text
    assert "'not'" not in text and "Never more than one of the combinations" in text


def test_the_app_serves_it_naming_only_its_own_origin(api, devserver):
    response = api("GET", "swagger.json", headers={"Host": "evil.example"})
    assert response.status_code == 200
    served = response.json()
    assert served["host"] == devserver.url.split("://", 1)[1] and "evil" not in response.text
    validate(served, cls=OpenAPIV2SpecValidator)
    assert served["paths"] == SWAGGER["paths"]


def test_behind_a_front_door_with_a_path_the_document_points_under_it():
    behind = to_swagger2(DOCUMENT, "https://api.example.com/mccf-backup")
    assert (behind["host"], behind["basePath"]) == ("api.example.com", "/mccf-backup/api")


def test_broken_settings_never_reach_an_anonymous_caller(api, devserver, monkeypatch):
    monkeypatch.setenv("MCCF_TARGETS", "/subscriptions/not-a-guid/secret-looking-value")
    monkeypatch.delenv("KEY_VAULT_URL")
    response = api("GET", "swagger.json", params={"code": ""})
    assert response.status_code == 200 and response.json()["swagger"] == "2.0"
    assert "secret-looking-value" not in response.text and "KEY_VAULT_URL" not in response.text
