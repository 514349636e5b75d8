"""Entra ID app roles on every route, the restore switch, and who ends up in the job history."""

from __future__ import annotations

import base64
import json
import re

import jwt
import pytest

from mccf_backup.service import BackupService

from .entra import bearer, identity_token
from .test_http_api import assert_problem

ROUTES = [
    ("GET", "status", {}),
    ("GET", "backups", {"params": {"target": "x"}}),
    ("GET", "operations/1234567890123deadbeef", {}),
    ("POST", "backups", {"json": {"target": "x"}}),
    ("POST", "backups/x-20260101000000/verify", {"json": {"target": "x"}}),
    ("POST", "restores", {"json": {"target": "x", "dryRun": True}}),
    ("GET", "preflight", {}),
    ("GET", "openapi.json", {}),  # the contract too: every route needs a role, one rule to check
    ("GET", "operations/not-an-id", {}),  # refused for who asks before what is asked is judged
    ("GET", "backups/x-20260101000000", {"params": {"target": "x"}}),
    ("POST", "backups/x-20260101000000/pin", {"json": {"target": "x", "label": "golden"}}),
    ("POST", "backups/x-20260101000000/unpin", {"json": {"target": "x"}}),
]
ANONYMOUS = {("get", "/swagger.json")}  # the OpenAPI 2.0 document, for the Logic Apps designer
NEEDS = {"GET": "Backup.Read", "POST backups": "Backup.Operator", "POST restores": "Restore.Operator"}


def principal(name: str, *roles: str) -> dict[str, str]:
    """What App Service Authentication would inject; anyone can send it too."""
    claims = [{"typ": "roles", "val": role} for role in roles] + [{"typ": "name", "val": name}]
    document = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(document).encode()).decode()}


def needed(method: str, path: str) -> str:
    if method == "GET":
        return NEEDS["GET"]
    return NEEDS["POST restores"] if path == "restores" or path.endswith("/unpin") else NEEDS["POST backups"]


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTES)
def test_every_route_needs_a_token_with_its_role(api, entra, method, path, kwargs):
    refused = api(method, path, **kwargs)
    assert_problem(refused, 401, "unauthenticated")
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    wrong = [r for r in ("Backup.Read", "Backup.Operator", "Restore.Operator") if r != needed(method, path)]
    if path.startswith("operations/"):
        wrong = []  # an operator role follows the operations its holder started (below)
    token = entra.api_token(*wrong)
    body = assert_problem(api(method, path, headers=bearer(token), **kwargs), 403, "role_missing")
    caller = jwt.decode(token, options={"verify_signature": False})["oid"]
    assert needed(method, path) in body["detail"] and caller in body["detail"]  # whom to give which role
    allowed = api(method, path, headers=bearer(entra.api_token(needed(method, path))), **kwargs)
    assert allowed.status_code not in (401, 403), allowed.text


def test_every_route_but_the_anonymous_one_is_in_that_list():
    from .test_openapi import app_routes

    def template(route: str) -> str:
        return "^/" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(route.lstrip("/"))) + "$"

    listed = {(method.lower(), "/" + path) for method, path, _ in ROUTES}
    for method, route in app_routes() - ANONYMOUS:
        assert any(m == method and re.match(template(route), path) for m, path in listed), (method, route)


def test_the_openapi_2_document_answers_anyone_and_says_nothing_secret(api, entra, devserver):
    import requests

    for params in ({}, {"code": "wrong"}):
        response = requests.get(f"{devserver.url}/api/swagger.json", params=params, timeout=30)
        assert response.status_code == 200 and response.json()["swagger"] == "2.0"
        assert devserver.key not in response.text and devserver.master_key not in response.text


def test_a_logic_apps_managed_identity_token_works_and_names_the_caller(api, entra, app_env):
    """The v1.0 token a Logic App's identity sends (issuer sts.windows.net, audience api://...)."""
    target = app_env["MCCF_TARGETS"].split(",")[0]
    accepted = api("POST", "backups", json={"target": target}, headers=bearer(identity_token(entra, "Backup.Operator")))
    assert accepted.status_code == 202, accepted.text
    job = next(j for j in BackupService.from_environment().list_jobs(target) if j.id == accepted.json()["id"])
    assert job.caller == entra.user_identity.client_id  # an app's token names it by its client ID


def test_a_workflow_follows_backups_with_its_operator_role_alone(api, entra, app_env):
    """A Logic App polls the Location of its 202 with the same identity, which holds Backup.Operator,
    not Backup.Read: that must be enough for its backup, and for the nightly backup its request joined.
    A restore operator learns nothing of backups; a reader sees them."""
    import requests

    target = app_env["MCCF_TARGETS"].split(",")[0]
    nightly = BackupService.from_environment().start_backup(target, "timer")
    workflow = bearer(identity_token(entra, "Backup.Operator"))
    accepted = api("POST", "backups", json={"target": target}, headers=workflow)
    assert accepted.status_code == 202 and accepted.json()["id"] == nightly.id, accepted.text  # joined
    location = accepted.headers["Location"]
    polled = requests.get(location, headers=workflow, timeout=30)
    assert polled.status_code in (200, 202) and polled.json()["id"] == nightly.id, polled.text
    restorer = bearer(entra.api_token("Restore.Operator"))
    other = requests.get(location, headers=restorer, timeout=30)
    unknown = requests.get(location.replace(nightly.id, "1234567890123deadbeef"), headers=restorer, timeout=30)
    assert assert_problem(other, 404, "operation_not_found") == assert_problem(unknown, 404, "operation_not_found")
    assert nightly.id not in other.text  # not even whether it exists
    assert requests.get(location, headers=bearer(entra.api_token("Backup.Read")), timeout=30).status_code in (
        200,
        202,
    )


def test_the_caller_goes_into_the_job_history(api, entra, app_env):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    token = entra.api_token("Backup.Operator")
    accepted = api("POST", "backups", json={"target": target}, headers=bearer(token))
    assert accepted.status_code == 202, accepted.text
    job = next(j for j in BackupService.from_environment().list_jobs(target) if j.id == accepted.json()["id"])
    assert job.caller == jwt.decode(token, options={"verify_signature": False})["azp"]


def test_role_names_come_from_settings(api, entra, app_env, monkeypatch):
    monkeypatch.setenv("ROLE_READ", "Backup.Operator")
    assert_problem(api("GET", "status", headers=bearer(entra.api_token("Backup.Read"))), 403, "role_missing")
    assert api("GET", "status", headers=bearer(entra.api_token("Backup.Operator"))).status_code == 200


def test_restore_can_be_switched_off(api, app_env, monkeypatch):
    monkeypatch.setenv("RESTORE_ENABLED", "false")
    app = app_env["MCCF_TARGETS"].split(",")[0].rsplit("/", 1)[1]
    assert_problem(api("POST", "restores", json={"target": app, "dryRun": True}), 403, "restore_disabled")
    assert api("POST", "backups", json={"target": app}).status_code == 202


def test_an_app_service_principal_header_proves_nothing(api, entra, app_env, monkeypatch):
    """Where Easy Auth does not run (Flex Consumption shipped without it), a function-key holder can
    send the header App Service would inject; with or without WEBSITE_AUTH_ENABLED it is not read."""
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    forged = principal("mallory", "Backup.Read", "Backup.Operator", "Restore.Operator")
    assert_problem(api("GET", "status", headers=forged), 401, "unauthenticated")
    with_token = {**forged, **bearer(entra.api_token("Backup.Read"))}
    assert_problem(api("POST", "backups", json={"target": "x"}, headers=with_token), 403, "role_missing")


def test_without_entra_id_a_forged_principal_is_ignored(api, app_env, monkeypatch):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    target = app_env["MCCF_TARGETS"].split(",")[0]
    accepted = api("POST", "backups", json={"target": target}, headers=principal("forged", "Restore.Operator"))
    job = next(j for j in BackupService.from_environment().list_jobs(target) if j.id == accepted.json()["id"])
    assert job.caller == "function-key"
