"""The operation core under the faults a queue-driven state machine meets: two advancers at once, a
message delivered twice, a message lost, an instance dying between a transition and its message."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from mccf_backup import clock, work_queue
from mccf_backup.jobs import StaleJob
from mccf_backup.lifecycle import IllegalTransition
from mccf_backup.service import BackupService
from devhost.queuepump import QueuePump

from .invariants import assert_nothing_lost
from .test_timer_and_runs import timer_function


@pytest.fixture
def slow(emulator):
    emulator.arm.options.operation_seconds = 3
    yield
    emulator.arm.options.operation_seconds = 0.3


def operations_queue(app_env) -> QueueClient:
    return QueueClient.from_connection_string(
        app_env["AzureWebJobsStorage"],
        app_env["OPERATIONS_QUEUE_NAME"],
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def queued(app_env) -> int:
    return operations_queue(app_env).get_queue_properties().approximate_message_count


def pump() -> QueuePump:
    from function_app import app

    return QueuePump(app, visibility_timeout=1, only=("advance_operation",))


def status_reads(emulator) -> int:
    return emulator.faults.count("arm", "GET", r"/operationStatuses/")


def test_two_advancers_racing_on_one_step_make_one_transition(service, app_env, emulator, target, slow):
    job = service.start_backup(target, "http")
    assert job.state == "running" and queued(app_env) == 1
    time.sleep(1.2)
    gate = threading.Barrier(2)
    results = []

    def advance() -> None:
        other = BackupService.from_environment()  # another instance
        gate.wait()
        results.append(other.operations.advance(job.id, job.step))

    threads = [threading.Thread(target=advance) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert service.jobs.get(job.id).step == job.step + 1  # exactly one transition won
    assert queued(app_env) == 2  # the start's message, and one (not two) for the next step
    assert {r.step for r in results} == {job.step + 1}
    assert_nothing_lost(service, emulator, [target])


def test_a_step_message_delivered_twice_moves_the_job_once(service, app_env, emulator, target, slow):
    job = service.start_backup(target, "http")
    (message,) = operations_queue(app_env).peek_messages(5) or [None]
    assert message is None  # delayed by Retry-After: not visible yet
    time.sleep(1.2)
    body = work_queue.StepMessage(job.id, job.step).to_json()
    first = service.advance_from_queue(body)
    reads = status_reads(emulator)
    second = service.advance_from_queue(body)  # the duplicate
    assert first.step == job.step + 1 and second.step == first.step
    assert status_reads(emulator) == reads  # the duplicate did not even look at ARM
    assert_nothing_lost(service, emulator, [target])


def test_a_lost_step_message_is_recovered_by_the_sweeper(service, app_env, emulator, target, monkeypatch):
    job = service.start_backup(target, "http")
    operations_queue(app_env).clear_messages()  # the message is lost
    time.sleep(1)
    assert service.jobs.get(job.id).state == "running"  # nobody moves it now
    shift = dt.timedelta(minutes=3)
    monkeypatch.setattr(clock, "utcnow", lambda: dt.datetime.now(dt.timezone.utc) + shift)
    timer_function("sweep_operations")(TimerRequest())
    pump().drain(timeout=60)
    assert service.jobs.get(job.id).status == "succeeded"
    monkeypatch.undo()
    assert_nothing_lost(service, emulator, [target])


def test_an_instance_dying_between_a_transition_and_its_message_is_recovered(
    service, app_env, emulator, target, monkeypatch, slow
):
    job = service.start_backup(target, "http")
    operations_queue(app_env).clear_messages()
    time.sleep(1)
    real_send = work_queue.send

    def die(*args, **kwargs):
        raise SystemExit("the instance died after the transition, before queueing the next step")

    monkeypatch.setattr(work_queue, "send", die)
    with pytest.raises(SystemExit):
        service.operations.advance(job.id, job.step)
    moved = service.jobs.get(job.id)
    assert moved.step > job.step and queued(app_env) == 0  # the transition is recorded; no message follows it
    monkeypatch.setattr(work_queue, "send", real_send)
    shift = dt.timedelta(minutes=3)
    monkeypatch.setattr(clock, "utcnow", lambda: dt.datetime.now(dt.timezone.utc) + shift)
    assert service.sweep().advanced == 1
    pump().drain(timeout=60)
    assert service.jobs.get(job.id).status == "succeeded"
    monkeypatch.undo()
    assert_nothing_lost(service, emulator, [target])


def test_a_stale_write_is_refused_and_an_illegal_transition_is_a_bug(service, target):
    job = service.start_backup(target, "http")
    current = service.jobs.get(job.id)
    service.operations.transition(current, "running", delay=5)  # another instance moved it on
    with pytest.raises(StaleJob):
        service.operations.transition(current, "running", delay=5)
    with pytest.raises(IllegalTransition):
        service.operations.transition(service.jobs.get(job.id), "accepted")


def test_the_operations_queue_alone_follows_a_backup_to_its_end(service, app_env, emulator, target, slow):
    job = service.start_backup(target, "http")
    stats = pump().drain(timeout=60)
    done = service.jobs.get(job.id)
    assert done.status == "succeeded" and done.share
    assert len(stats.durations["advance_operation"]) >= 2 and max(stats.durations["advance_operation"]) < 2
    assert_nothing_lost(service, emulator, [target])


def test_a_job_whose_target_left_mccf_targets_ends_and_releases_its_lease(
    service, app_env, emulator, target, monkeypatch, slow
):
    job = service.start_backup(target, "http")
    monkeypatch.setenv("MCCF_TARGETS", app_env["MCCF_TARGETS"].split(",")[1])  # the operator removed it
    other = BackupService.from_environment()
    shift = dt.timedelta(minutes=3)
    monkeypatch.setattr(clock, "utcnow", lambda: dt.datetime.now(dt.timezone.utc) + shift)
    other.sweep()
    ended = other.jobs.get(job.id)
    assert (ended.state, ended.error_code) == ("abandoned", "target_not_allowed")
    assert other.run.leases.holder(target) is None


def test_a_stale_listing_never_re_tags_a_share_its_job_claimed_since(service, app_env, emulator, target):
    from azure.mgmt.confidentialledger.models import ManagedCCFBackup

    from ..emulator.helpers import file_service_sas_url, mgmt_client

    rg, app = target.split("/")[4], target.rsplit("/", 1)[1]
    mgmt_client(emulator).managed_ccf.begin_backup(
        rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator))
    ).result()
    listing = service.scheduler._unclaimed()  # a scheduled run's listing: the share is unclaimed in it
    assert app in listing
    share = listing[app][0].name
    catalog = service.run.catalog()
    catalog.tag(share, {"mccfbackup_job": "its-own-job", "mccfbackup_target": target})  # its job finished meanwhile
    assert service.backups.adopt(service.targets.resolve(target), listing) == []
    assert catalog.get(service.targets.resolve(target), share).metadata["mccfbackup_job"] == "its-own-job"


def test_concurrent_backups_join_even_when_storage_is_slow(api, app_env, emulator):
    from .test_idempotency_and_single_flight import at_once, posts

    target = app_env["MCCF_TARGETS"].split(",")[0]
    emulator.faults.set_latency("file", 3.5)
    try:
        answers = at_once(6, lambda i: api("POST", "backups", json={"target": target}))
    finally:
        emulator.faults.set_latency("file", 0)
    assert [a.status_code for a in answers] == [202] * 6, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1 and posts(emulator, target, "backup") == 1


def test_the_next_backup_follows_a_backup_arm_still_runs_for_an_abandoned_job(
    service, app_env, emulator, target, monkeypatch
):
    emulator.arm.options.operation_seconds = 8
    emulator.faults.fail_next("arm", 404, method="GET", path=r"/operationStatuses/", count=None, code="NotFound")
    try:
        lost = service.start_backup(target, "http")
        time.sleep(1.2)
        assert service.poll(lost.id).watch == "share"
        shift = dt.timedelta(seconds=service.settings.lost_operation_grace_seconds + 1)
        monkeypatch.setattr(clock, "utcnow", lambda: dt.datetime.now(dt.timezone.utc) + shift)
        assert service.operations.advance(lost.id).error_code == "operation_abandoned"
        monkeypatch.undo()
        emulator.faults.clear()
        nxt = service.start_backup(target, "http")  # ARM answers 409: the lost backup still runs
        assert nxt.state == "running" and nxt.watch == "share"
        nxt = service.follow(nxt)
    finally:
        emulator.arm.options.operation_seconds = 0.3
    assert nxt.status == "succeeded" and nxt.share  # the running backup's share, no failure recorded
    assert [j.error_code for j in service.list_jobs(target) if j.status == "failed"] == ["operation_abandoned"]
    assert_nothing_lost(service, emulator, [target])


def test_an_orphaned_idempotency_key_is_taken_over_after_a_minute(service, app_env, emulator, target):
    from mccf_backup import idempotency

    service.jobs.list()  # the table exists once the engine has used it
    row = idempotency._row("backups", "deploy-42")
    digest = idempotency.body_hash({"target": target.lower()})
    entity = {"PartitionKey": "idempotency", "RowKey": row, "bodyHash": digest, "jobId": "1" * 13 + "0" * 8}
    service.run.table.client.create_entity({**entity, "bound": clock.utcnow()})  # a request that died just now
    with pytest.raises(Exception, match="still starting"):
        service.start_backup(target, "http", idempotency_key="deploy-42")
    service.run.table.client.upsert_entity({**entity, "bound": clock.utcnow() - dt.timedelta(minutes=2)})
    job = service.start_backup(target, "http", idempotency_key="deploy-42")
    assert job.state == "running"
    assert service.start_backup(target, "http", idempotency_key="deploy-42").id == job.id


def test_a_verification_the_sweeper_ended_meanwhile_still_records_its_verdict(service, app_env, emulator, target):
    share = service.backup(target, "cli").share
    queued = service.request_verify(target, share, "http")
    current = service.jobs.get(queued.id)
    service.operations.fail(current, __import__("mccf_backup.errors").errors.OperationAbandoned("swept"), "abandoned")
    job, report = service.verify(target, share, "timer", job=queued)  # the timer's copy is stale now
    assert report.valid and job.id != queued.id and job.status == "succeeded"
