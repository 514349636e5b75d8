"""Both queues on Azurite's real queue service: the scale-out mode's one message per target (poison
messages explained), and the operations queue that follows every job with no invocation waiting."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from mccf_backup.service import BackupService
from devhost.queuepump import QueuePump

from .invariants import assert_nothing_lost, backup_operations
from .test_timer_and_runs import timer_function


@pytest.fixture
def queue_env(app_env, monkeypatch):
    name = f"targets-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("BACKUP_FANOUT", "queue")
    monkeypatch.setenv("BACKUP_QUEUE_NAME", name)
    return {**app_env, "BACKUP_QUEUE_NAME": name}


def queue(env: dict, name: str) -> QueueClient:
    return QueueClient.from_connection_string(
        env["AzureWebJobsStorage"],
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def pump(*only: str) -> QueuePump:
    from function_app import app

    return QueuePump(app, visibility_timeout=1, only=only or None)


def test_the_timer_enqueues_one_message_per_target_and_each_is_backed_up(queue_env, emulator):
    targets = queue_env["MCCF_TARGETS"].split(",")
    timer_function()(TimerRequest())
    messages = [json.loads(m.content) for m in queue(queue_env, queue_env["BACKUP_QUEUE_NAME"]).peek_messages(32)]
    assert sorted(m["target"] for m in messages) == sorted(targets)
    assert len({m["run"] for m in messages}) == 1  # one scheduled run
    assert not any(backup_operations(emulator, t) for t in targets), "in queue mode the timer only enqueues"
    stats = pump().drain(timeout=60)
    assert stats.poisoned == 0 and len(stats.durations["backup_target"]) == 2
    assert len(stats.durations["advance_operation"]) >= 2  # the operations queue followed both backups
    service = BackupService.from_environment()
    for jobs in assert_nothing_lost(service, emulator, targets).values():
        assert [(j.trigger, j.status) for j in jobs] == [("queue", "succeeded")]


def test_no_queue_invocation_waits_for_an_operation(queue_env, emulator):
    """Backups that take 4 s each are followed by steps that each take a fraction of that."""
    targets = queue_env["MCCF_TARGETS"].split(",")
    emulator.arm.options.operation_seconds = 4
    try:
        timer_function()(TimerRequest())
        stats = pump().drain(timeout=60)
    finally:
        emulator.arm.options.operation_seconds = 0.3
    longest = max(max(values) for values in stats.durations.values())
    assert longest < 2, f"an invocation took {longest:.1f} s of a 4 s operation"
    assert len(stats.durations["advance_operation"]) >= 4  # several looks per backup, none of them waiting
    service = BackupService.from_environment()
    for jobs in assert_nothing_lost(service, emulator, targets).values():
        assert [j.status for j in jobs] == ["succeeded"]


def test_a_target_that_keeps_failing_lands_in_the_poison_queue_with_its_reason(queue_env, emulator):
    good, bad = queue_env["MCCF_TARGETS"].split(",")
    emulator.faults.fail_next(
        "arm", 403, code="AuthorizationFailed", method="POST", path=re.escape(bad) + "/backup$", count=None
    )
    timer_function()(TimerRequest())
    stats = pump().drain(timeout=60)
    assert (len(stats.durations["backup_target"]), stats.failed_attempts, stats.poisoned) == (4, 3, 1)
    (poisoned,) = queue(queue_env, queue_env["BACKUP_QUEUE_NAME"] + "-poison").receive_messages()
    assert json.loads(poisoned.content)["target"] == bad
    emulator.faults.clear()
    service = BackupService.from_environment()
    jobs = assert_nothing_lost(service, emulator, [good, bad])
    assert [j.status for j in jobs[good]] == ["succeeded"]
    attempts = jobs[bad]
    assert [(j.status, j.error_code) for j in attempts] == [("failed", "permission_denied")] * 3
    assert f"attempt 3 of 3; the message goes to '{queue_env['BACKUP_QUEUE_NAME']}-poison'" in attempts[0].error_message


@pytest.mark.parametrize("body", ["not a target message", '{"target": "evil-app\\nMCCFBACKUP_EVENT"}', "[" * 5000])
def test_a_message_naming_no_target_is_poisoned_and_records_nothing(queue_env, emulator, body):
    client = queue(queue_env, queue_env["BACKUP_QUEUE_NAME"])
    client.create_queue()
    client.send_message(body)
    stats = pump("backup_target").drain(timeout=30)
    assert (stats.succeeded, stats.poisoned) == (0, 1)
    # no failed job (and so no backup.failure event) whose target is whatever the message said
    assert BackupService.from_environment().list_jobs() == []


def test_a_message_cannot_choose_the_trigger_its_job_records(queue_env, emulator):
    target = queue_env["MCCF_TARGETS"].split(",")[0]
    client = queue(queue_env, queue_env["BACKUP_QUEUE_NAME"])
    client.create_queue()
    client.send_message(json.dumps({"v": 1, "target": target, "run": "x", "trigger": "reconcile"}))
    pump().drain(timeout=60)
    (job,) = BackupService.from_environment().list_jobs()
    assert (job.trigger, job.status) == ("queue", "succeeded")


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        '{"job": 5, "step": 1}',
        '{"job": "x", "step": -1}',
        "[]",
        '{"job": "\\ud800", "step": 0}',
        '{"job": "a/b", "step": 0}',
        '{"job": "' + "1" * 13 + 'deadbeef", "step": 1e999}',
    ],
)
def test_a_malformed_operations_message_is_poisoned_without_touching_any_job(queue_env, emulator, body):
    client = queue(queue_env, queue_env["OPERATIONS_QUEUE_NAME"])
    client.create_queue()
    client.send_message(body)
    stats = pump("advance_operation").drain(timeout=30)
    assert (stats.succeeded, stats.poisoned) == (0, 1)
    assert BackupService.from_environment().list_jobs() == []
