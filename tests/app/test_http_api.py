"""The HTTP API end to end: dev server -> real handlers -> engine -> emulator + Azurite."""

from __future__ import annotations

import time

import pytest
import requests
from azure.mgmt.confidentialledger.models import ManagedCCFBackup
from azure.storage.fileshare import ShareServiceClient

from ..emulator.helpers import file_service_sas_url, mgmt_client


def app_of(resource_id: str) -> tuple[str, str]:
    parts = resource_id.split("/")
    return parts[4], parts[-1]


def poll_like_logic_apps(
    response: requests.Response, deadline_seconds: float = 60, allow_pending: bool = False
) -> requests.Response:
    """Exactly what the Logic Apps HTTP action does: follow Location, honour Retry-After, stop at a non-202."""
    deadline = time.monotonic() + deadline_seconds
    while response.status_code == 202:
        if time.monotonic() >= deadline:
            assert allow_pending, "the operation never finished"
            return response
        time.sleep(int(response.headers["Retry-After"]))
        response = requests.get(response.headers["Location"], timeout=30)
    return response


def assert_problem(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["status"] == status
    assert body["title"] and body["detail"] and body["type"].endswith(code)
    assert "Traceback" not in response.text
    return body


def test_backup_over_http_polled_to_200(api, app_env, emulator, devserver):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    _, app = app_of(target)
    accepted = api("POST", "backups", json={"target": app})
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    assert location.startswith(devserver.url + "/api/operations/") and f"code={devserver.key}" in location
    assert int(accepted.headers["Retry-After"]) >= 1
    assert accepted.json()["status"] == "running"
    final = poll_like_logic_apps(accepted)
    assert final.status_code == 200, final.text
    result = final.json()
    assert result["status"] == "succeeded" and result["share"].startswith(f"{app}-")
    assert result["started"] <= result["ended"] and result["trigger"] == "http"
    metadata = (
        ShareServiceClient.from_connection_string(emulator.connection_string())
        .get_share_client(result["share"])
        .get_share_properties()
        .metadata
    )
    assert metadata["mccfbackup_target"] == target and metadata["mccfbackup_job"] == result["id"]
    assert metadata["mccfbackup_outcome"] == "succeeded"
    listing = api("GET", "backups", params={"target": target})
    assert [b["share"] for b in listing.json()["backups"]] == [result["share"]]
    assert listing.json()["backups"][0]["restorable"] is True
    again = requests.get(location, timeout=30)  # a finished operation keeps answering the same
    assert again.status_code == 200 and again.json()["share"] == result["share"]


def test_restore_refused_while_the_instance_exists_then_succeeds_after_delete(api, app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    rg, app = app_of(target)
    backup = poll_like_logic_apps(api("POST", "backups", json={"target": target}))
    assert backup.status_code == 200
    restores_before = emulator.faults.count("arm", "POST", "/restore$")
    refused = assert_problem(api("POST", "restores", json={"target": app}), 409, "instance_exists")
    assert "delete" in refused["detail"].lower()
    assert emulator.faults.count("arm", "POST", "/restore$") == restores_before  # refused before any ARM call
    mgmt_client(emulator).managed_ccf.begin_delete(rg, app).result()
    restored = poll_like_logic_apps(api("POST", "restores", json={"target": app}))
    assert restored.status_code == 200, restored.text
    assert restored.json()["share"] == backup.json()["share"]
    assert restored.json()["restoreRegion"] == "eastus"  # recorded when the backup was made
    instance = mgmt_client(emulator).managed_ccf.get(rg, app)
    assert instance.properties.provisioning_state == "Succeeded"


def test_restore_of_a_backup_older_than_90_days_is_refused_before_any_arm_call(api, app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[1]
    rg, app = app_of(target)
    emulator.clock.advance(days=-91)  # the service stamps the share 91 days ago
    mgmt_client(emulator).managed_ccf.begin_backup(
        rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator))
    ).result()
    emulator.clock.reset()
    (old_share,) = [
        s.name
        for s in ShareServiceClient.from_connection_string(emulator.connection_string()).list_shares(
            name_starts_with=f"{app}-"
        )
    ]
    mgmt_client(emulator).managed_ccf.begin_delete(rg, app).result()
    restores_before = emulator.faults.count("arm", "POST", "/restore$")
    body = assert_problem(api("POST", "restores", json={"target": app, "share": old_share}), 422, "backup_too_old")
    assert "90 days" in body["detail"] and body["field"] == "share"
    assert_problem(api("POST", "restores", json={"target": app}), 404, "no_restorable_backup")
    assert emulator.faults.count("arm", "POST", "/restore$") == restores_before


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("POST", "backups", {"json": {"target": "not-a-target"}}, 404, "target_not_allowed"),
        (
            "POST",
            "backups",
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_json",
        ),
        ("POST", "backups", {"json": {"target": 5}}, 400, "invalid_request"),
        ("POST", "backups", {"json": {}}, 400, "invalid_request"),
        ("POST", "backups", {"json": {"target": "x", "extra": 1}}, 400, "invalid_request"),
        ("POST", "backups", {"json": ["target"]}, 400, "invalid_json"),
        ("POST", "restores", {"json": {"target": "TARGET", "share": "Bad_Name!"}}, 400, "invalid_share_name"),
        (
            "POST",
            "restores",
            {"json": {"target": "TARGET", "share": "other-app-20260101000000"}},
            400,
            "share_of_other_target",
        ),
        ("POST", "restores", {"json": {"target": "TARGET", "restoreRegion": ["eastus"]}}, 400, "invalid_request"),
        ("GET", "backups", {}, 400, "invalid_request"),
        ("GET", "operations/not-an-id", {}, 404, "operation_not_found"),
        ("GET", "operations/1234567890123deadbeef", {}, 404, "operation_not_found"),
    ],
)
def test_bad_requests_get_problem_json_with_a_stable_code(api, app_env, method, path, kwargs, status, code):
    app = app_of(app_env["MCCF_TARGETS"].split(",")[0])[1]
    if "json" in kwargs and isinstance(kwargs["json"], dict):
        kwargs = {**kwargs, "json": {k: (app if v == "TARGET" else v) for k, v in kwargs["json"].items()}}
    assert_problem(api(method, path, **kwargs), status, code)


def test_function_key_is_required(devserver):
    assert requests.post(f"{devserver.url}/api/backups", json={"target": "x"}, timeout=10).status_code == 401
    wrong = requests.get(f"{devserver.url}/api/status", params={"code": "wrong"}, timeout=10)
    assert wrong.status_code == 401
    header = requests.get(f"{devserver.url}/api/status", headers={"x-functions-key": devserver.key}, timeout=30)
    assert header.status_code == 200


def test_missing_key_vault_secret_is_a_clear_error(api, app_env, monkeypatch, emulator):
    monkeypatch.setenv("STORAGE_SECRET_NAME", "no-such-secret")
    app = app_of(app_env["MCCF_TARGETS"].split(",")[0])[1]
    body = assert_problem(api("POST", "backups", json={"target": app}), 500, "secret_not_found")
    assert "no-such-secret" in body["detail"] and emulator.env["KEY_VAULT_URL"].rstrip("/") in body["detail"]


def test_identity_without_permission_names_identity_action_and_scope(api, app_env, emulator):
    emulator.deny(emulator.system_identity.client_id, {"Microsoft.ConfidentialLedger/managedCCFs/backup/action"})
    target = app_env["MCCF_TARGETS"].split(",")[0]
    body = assert_problem(api("POST", "backups", json={"target": target}), 502, "permission_denied")
    assert emulator.system_identity.client_id in body["detail"]
    assert "Microsoft.ConfidentialLedger/managedCCFs/backup/action" in body["detail"]
    assert "/subscriptions/" in body["detail"]
    jobs = api("GET", "status").json()["targets"]
    failure = next(t for t in jobs if t["target"] == target)["lastFailure"]
    assert failure["error"]["code"] == "permission_denied"


def test_status_reports_newest_backup_and_last_failure(api, app_env):
    first, second = app_env["MCCF_TARGETS"].split(",")
    assert poll_like_logic_apps(api("POST", "backups", json={"target": first})).status_code == 200
    report = {t["target"]: t for t in api("GET", "status").json()["targets"]}
    assert report[first]["newestBackup"]["restorable"] is True
    assert report[first]["newestBackupAgeHours"] < 1
    assert report[second]["newestBackup"] is None and report[second]["lastJob"] is None


def test_an_oversized_body_is_refused(api, app_env):
    app = app_of(app_env["MCCF_TARGETS"].split(",")[0])[1]
    body = assert_problem(
        api(
            "POST", "backups", data=b'{"target": "' + b"x" * 20000 + b'"}', headers={"Content-Type": "application/json"}
        ),
        400,
        "invalid_request",
    )
    assert "larger than" in body["detail"]
    assert api("POST", "backups", json={"target": app}).status_code == 202


def test_a_failing_operation_polled_like_logic_apps_ends_in_a_problem(api, app_env, emulator):
    emulator.faults.fail_next_operation("backup", "LedgerUnavailable", "The ledger nodes are unreachable.")
    target = app_env["MCCF_TARGETS"].split(",")[0]
    final = poll_like_logic_apps(api("POST", "backups", json={"target": target}))
    body = assert_problem(final, 502, "backup_failed")
    assert "LedgerUnavailable" in body["detail"] and body["operation"]["status"] == "failed"
