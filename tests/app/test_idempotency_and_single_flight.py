"""Idempotency-Key and single flight under concurrency: one ARM request per operation, however many
callers ask at once, with or without keys; no failed job for a request that merely lost the race."""

from __future__ import annotations

import datetime as dt
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mccf_backup import clock
from mccf_backup.service import BackupService

from ..emulator.helpers import mgmt_client
from .invariants import assert_nothing_lost
from .test_http_api import assert_problem, poll_like_logic_apps


@pytest.fixture
def slow_operations(emulator):
    emulator.arm.options.operation_seconds = 4
    yield
    emulator.arm.options.operation_seconds = 0.3


def posts(emulator, target: str, action: str) -> int:
    return emulator.faults.count("arm", "POST", re.escape(target) + f"/{action}$")


def at_once(count: int, call) -> list:
    """``call(i)`` from ``count`` threads released together."""
    gate = threading.Barrier(count)

    def one(i: int):
        gate.wait()
        return call(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def failed_jobs(target: str) -> list:
    return [j for j in BackupService.from_environment().list_jobs(target, limit=100) if j.status == "failed"]


def deleted(emulator, target: str) -> str:
    rg, app = target.split("/")[4], target.rsplit("/", 1)[1]
    mgmt_client(emulator).managed_ccf.begin_delete(rg, app).result()
    return app


@pytest.mark.parametrize("keys", ["distinct keys", "no keys"])
def test_ten_concurrent_backups_make_one_arm_request_and_answer_one_operation(
    api, app_env, emulator, slow_operations, keys
):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    headers = (lambda i: {"Idempotency-Key": f"deploy-{i}"}) if keys == "distinct keys" else (lambda i: {})
    answers = at_once(10, lambda i: api("POST", "backups", json={"target": target}, headers=headers(i)))
    assert [a.status_code for a in answers] == [202] * 10, [a.text for a in answers if a.status_code != 202]
    assert len({a.json()["id"] for a in answers}) == 1
    assert posts(emulator, target, "backup") == 1
    assert poll_like_logic_apps(answers[3]).status_code == 200
    assert failed_jobs(target) == []  # no failure recorded, so no backup.failure event, for losing a race
    assert_nothing_lost(BackupService.from_environment(), emulator, [target])
    if keys == "distinct keys":  # each key now names the one operation
        again = api("POST", "backups", json={"target": target}, headers={"Idempotency-Key": "deploy-7"})
        assert again.status_code == 202 and again.json()["id"] == answers[0].json()["id"]
        assert posts(emulator, target, "backup") == 1


def test_five_concurrent_restores_make_one_arm_request(api, app_env, emulator, slow_operations):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    emulator.arm.options.operation_seconds = 0.3
    assert poll_like_logic_apps(api("POST", "backups", json={"target": target})).status_code == 200
    app = deleted(emulator, target)
    emulator.arm.options.operation_seconds = 4
    answers = at_once(5, lambda i: api("POST", "restores", json={"target": app}))
    accepted = [a for a in answers if a.status_code == 202]
    assert len(accepted) == 1, [a.text for a in answers]
    running = accepted[0].json()["id"]
    for refused in (a for a in answers if a.status_code != 202):
        assert running in assert_problem(refused, 409, "operation_in_progress")["detail"]
    assert posts(emulator, target, "restore") == 1
    assert poll_like_logic_apps(accepted[0]).status_code == 200
    assert failed_jobs(target) == []


def test_same_key_and_body_returns_the_same_operation(api, app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    headers = {"Idempotency-Key": "change-4711"}
    first = api("POST", "backups", json={"target": target}, headers=headers)
    assert first.status_code == 202
    assert poll_like_logic_apps(first).status_code == 200
    again = api("POST", "backups", json={"target": target}, headers=headers)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert posts(emulator, target, "backup") == 1


def test_same_key_with_another_body_is_a_conflict(api, app_env):
    first, second = app_env["MCCF_TARGETS"].split(",")
    headers = {"Idempotency-Key": "change-4712"}
    assert api("POST", "backups", json={"target": first}, headers=headers).status_code == 202
    assert_problem(api("POST", "backups", json={"target": second}, headers=headers), 409, "idempotency_key_reused")


def test_a_request_arm_refused_does_not_burn_its_key(api, app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    headers = {"Idempotency-Key": "change-4713"}
    emulator.faults.fail_next("arm", 403, code="AuthorizationFailed", method="POST", path="/backup$")
    assert_problem(api("POST", "backups", json={"target": target}, headers=headers), 502, "permission_denied")
    retried = api("POST", "backups", json={"target": target}, headers=headers)
    assert retried.status_code == 202  # judged afresh: a new attempt, which ARM accepted
    assert poll_like_logic_apps(retried).status_code == 200


def test_a_restore_refused_while_another_runs_keeps_its_key_usable(api, app_env, emulator, slow_operations):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    emulator.arm.options.operation_seconds = 0.3
    assert poll_like_logic_apps(api("POST", "backups", json={"target": target})).status_code == 200
    app = deleted(emulator, target)
    emulator.arm.options.operation_seconds = 4
    blocker = api("POST", "restores", json={"target": app})
    assert blocker.status_code == 202
    key = {"Idempotency-Key": "restore-after-incident-9"}
    refused = assert_problem(api("POST", "restores", json={"target": app}, headers=key), 409, "operation_in_progress")
    assert blocker.json()["id"] in refused["detail"]
    assert poll_like_logic_apps(blocker).status_code == 200
    emulator.arm.options.operation_seconds = 0.3
    deleted(emulator, target)  # the incident again: the blocker's restore is gone too
    retried = api("POST", "restores", json={"target": app}, headers=key)
    assert retried.status_code == 202, retried.text  # not "still starting" forever: the key was released
    assert poll_like_logic_apps(retried).status_code == 200


def test_a_restore_whose_status_url_fails_forever_ends_at_its_deadline_and_blocks_nothing(
    api, app_env, emulator, monkeypatch
):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    assert poll_like_logic_apps(api("POST", "backups", json={"target": target})).status_code == 200
    app = deleted(emulator, target)
    emulator.faults.fail_next("arm", 400, method="GET", path=r"/operationStatuses/", count=None, code="BadRequest")
    accepted = api("POST", "restores", json={"target": app})
    assert accepted.status_code == 202
    assert poll_like_logic_apps(accepted, deadline_seconds=5, allow_pending=True).status_code == 202  # wedged...
    later = dt.timedelta(minutes=61)  # ...until its deadline
    monkeypatch.setattr(clock, "utcnow", lambda: dt.datetime.now(dt.timezone.utc) + later)
    final = poll_like_logic_apps(accepted)
    body = assert_problem(final, 504, "operation_timed_out")
    assert body["operation"]["state"] == "abandoned"
    emulator.faults.clear()
    deleted(emulator, target)  # the instance ARM did restore meanwhile
    again = api("POST", "restores", json={"target": app})
    assert again.status_code == 202, again.text  # the ended job holds no lease
    assert poll_like_logic_apps(again).status_code == 200
