"""Idempotency-Key and single flight: a repeat never starts a second ARM operation."""

from __future__ import annotations

import re

import pytest

from ..emulator.helpers import mgmt_client
from .test_http_api import assert_problem, poll_like_logic_apps


@pytest.fixture
def slow_operations(emulator):
    emulator.arm.options.operation_seconds = 4
    yield
    emulator.arm.options.operation_seconds = 0.3


def backup_posts(emulator, target: str) -> int:
    return emulator.faults.count("arm", "POST", re.escape(target) + "/backup$")


def test_same_key_and_body_returns_the_same_operation(api, app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    headers = {"Idempotency-Key": "change-4711"}
    first = api("POST", "backups", json={"target": target}, headers=headers)
    assert first.status_code == 202
    assert poll_like_logic_apps(first).status_code == 200
    again = api("POST", "backups", json={"target": target}, headers=headers)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert backup_posts(emulator, target) == 1


def test_same_key_with_another_body_is_a_conflict(api, app_env):
    first, second = app_env["MCCF_TARGETS"].split(",")
    headers = {"Idempotency-Key": "change-4712"}
    assert api("POST", "backups", json={"target": first}, headers=headers).status_code == 202
    assert_problem(api("POST", "backups", json={"target": second}, headers=headers), 409, "idempotency_key_reused")


def test_a_refused_request_does_not_burn_its_key(api, app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    headers = {"Idempotency-Key": "change-4713"}
    emulator.faults.fail_next("arm", 403, code="AuthorizationFailed", method="POST", path="/backup$")
    assert_problem(api("POST", "backups", json={"target": target}, headers=headers), 502, "permission_denied")
    retried = api("POST", "backups", json={"target": target}, headers=headers)
    assert retried.status_code == 202  # the job of the refused attempt exists and failed: a replay shows it


def test_bad_idempotency_keys_are_refused(api, app_env):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    assert_problem(
        api("POST", "backups", json={"target": target}, headers={"Idempotency-Key": "a" * 256}), 400, "invalid_request"
    )


def test_a_backup_requested_while_one_runs_returns_the_running_one(api, app_env, emulator, slow_operations):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    first = api("POST", "backups", json={"target": target})
    second = api("POST", "backups", json={"target": target})
    assert first.status_code == second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert backup_posts(emulator, target) == 1
    assert poll_like_logic_apps(second).status_code == 200


def test_a_restore_requested_while_one_runs_is_a_conflict(api, app_env, emulator, slow_operations):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    rg, app = target.split("/")[4], target.rsplit("/", 1)[1]
    emulator.arm.options.operation_seconds = 0.3
    assert poll_like_logic_apps(api("POST", "backups", json={"target": target})).status_code == 200
    mgmt_client(emulator).managed_ccf.begin_delete(rg, app).result()
    emulator.arm.options.operation_seconds = 4
    first = api("POST", "restores", json={"target": app})
    assert first.status_code == 202
    body = assert_problem(api("POST", "restores", json={"target": app}), 409, "operation_in_progress")
    assert first.json()["id"] in body["detail"]
    assert emulator.faults.count("arm", "POST", re.escape(target) + "/restore$") == 1
