"""Fault injection: for each fault, the expected outcome, and in every case nothing lost or made twice.

Every test ends with assert_nothing_lost: after one reconciliation pass (what the next run does
first) no job is running, every backup share is tagged for its target and claimed by exactly one
succeeded job, and ARM ran at most one backup per job.
"""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from azure.functions.timer import TimerRequest
from azure.mgmt.confidentialledger.models import ManagedCCFBackup

from mccf_backup import clock
from mccf_backup.identity import reset_credentials
from mccf_backup.jobs import Job, new_job_id
from mccf_backup.service import BackupService

from ..emulator.helpers import file_service_sas_url, mgmt_client, secret_client
from .invariants import assert_nothing_lost, backup_operations, shares_of
from .test_timer_and_runs import timer_function


def backup_path(target: str) -> str:
    return re.escape(target) + "/backup$"


def test_a_429_storm_is_waited_out_with_retry_after(service, emulator, target):
    emulator.faults.fail_next("arm", 429, count=4, method="POST", path=backup_path(target), retry_after=1)
    job = service.backup(target, "timer")
    assert job.status == "succeeded", job.error_message
    assert emulator.faults.count("arm", "POST", backup_path(target), status=429) == 4
    assert len(backup_operations(emulator, target)) == 1
    assert_nothing_lost(service, emulator, [target])


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_before_arm_acted_is_checked_then_asked_once_more(service, emulator, target, status):
    emulator.faults.fail_next("arm", status, method="POST", path=backup_path(target))
    job = service.backup(target, "timer")
    assert job.status == "succeeded", job.error_message
    assert emulator.faults.count("arm", "POST", backup_path(target)) == 2  # never retried blindly by the library
    assert len(backup_operations(emulator, target)) == 1
    assert_nothing_lost(service, emulator, [target])


@pytest.mark.parametrize("fault", ["500", "503", "reset"])
def test_an_answer_lost_after_arm_started_the_backup_makes_no_second_one(service, emulator, target, fault):
    if fault == "reset":
        emulator.faults.drop_next("arm", method="POST", path=backup_path(target), after=True)
    else:
        emulator.faults.fail_next("arm", int(fault), method="POST", path=backup_path(target), after=True)
    job = service.backup(target, "timer")
    assert job.status == "succeeded", job.error_message
    assert len(backup_operations(emulator, target)) == 1  # ARM ran one backup, although asked twice
    assert list(shares_of(emulator, target.rsplit("/", 1)[-1])) == [job.share]
    assert_nothing_lost(service, emulator, [target])


def test_a_connection_reset_before_arm_acted_is_checked_then_asked_once_more(service, emulator, target):
    emulator.faults.drop_next("arm", method="POST", path=backup_path(target))
    job = service.backup(target, "timer")
    assert job.status == "succeeded", job.error_message
    assert len(backup_operations(emulator, target)) == 1
    assert_nothing_lost(service, emulator, [target])


def test_an_answer_slower_than_the_client_timeout_makes_no_second_backup(app_env, emulator, target, monkeypatch):
    monkeypatch.setenv("ARM_TIMEOUT_SECONDS", "2")
    service = BackupService.from_environment()
    # ARM starts the backup at once, and answers only after the client gave up
    emulator.faults.hang_next("arm", 4, method="POST", path=backup_path(target), after=True)
    job = service.backup(target, "timer")
    assert job.status == "succeeded", job.error_message
    assert len(backup_operations(emulator, target)) == 1
    assert_nothing_lost(service, emulator, [target])


@pytest.mark.parametrize("end", ["Failed", "Canceled"])
def test_an_operation_that_ends_failed_or_canceled_is_a_recorded_failure(service, emulator, target, end):
    emulator.faults.fail_next_operation("backup", code="InternalError", message="Node unavailable.", status=end)
    job = service.backup(target, "timer")
    assert job.status == "failed" and job.error_code == "backup_failed"
    assert f"ended {end}" in job.error_message and "InternalError" in job.error_message
    assert shares_of(emulator, target.rsplit("/", 1)[-1]) == {}
    assert_nothing_lost(service, emulator, [target])


@pytest.mark.parametrize("seconds", [0.3, 3.0], ids=["share-written", "still-running"])
def test_an_operation_arm_forgets_is_judged_by_its_share(service, emulator, target, seconds):
    emulator.faults.fail_next("arm", 404, method="GET", path=r"/operationStatuses/", count=None, code="NotFound")
    emulator.arm.options.operation_seconds = seconds
    try:
        job = service.backup(target, "timer")
    finally:
        emulator.arm.options.operation_seconds = 0.3
    assert job.status == "succeeded", job.error_message  # its share appeared: it ran
    assert list(shares_of(emulator, target.rsplit("/", 1)[-1])) == [job.share]
    assert_nothing_lost(service, emulator, [target])


def test_a_single_404_while_polling_a_running_backup_does_not_fail_it(service, emulator, target):
    emulator.faults.fail_next("arm", 404, method="GET", path=r"/operationStatuses/", code="NotFound")  # once
    emulator.arm.options.operation_seconds = 3.0
    try:
        job = service.backup(target, "timer")
    finally:
        emulator.arm.options.operation_seconds = 0.3
    assert job.status == "succeeded", job.error_message
    assert_nothing_lost(service, emulator, [target])


def test_a_share_no_job_claims_is_adopted_by_the_next_run(service, emulator, target):
    # someone ran the manual procedure (or ARM acted on a request long after its client gave up)
    rg, app = target.split("/")[4], target.rsplit("/", 1)[-1]
    mgmt_client(emulator).managed_ccf.begin_backup(
        rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator))
    ).result()
    (share,) = shares_of(emulator, app)
    jobs = assert_nothing_lost(service, emulator, [target])[target]
    assert [(j.trigger, j.status, j.share) for j in jobs] == [("reconcile", "succeeded", share)]


def test_managed_identity_down_fails_every_target_clearly(app_env, emulator):
    targets = app_env["MCCF_TARGETS"].split(",")
    emulator.faults.down("identity")
    reset_credentials()
    with pytest.raises(Exception, match="2 of 2 targets failed"):
        timer_function()(TimerRequest())
    emulator.faults.clear()
    reset_credentials()
    service = BackupService.from_environment()
    for jobs in assert_nothing_lost(service, emulator, targets).values():
        (job,) = jobs
        assert job.status == "failed" and job.error_code == "authentication_failed"
        assert "managed identity" in job.error_message
    assert all(not backup_operations(emulator, t) for t in targets)


def test_key_vault_down_fails_every_target_clearly(app_env, emulator):
    targets = app_env["MCCF_TARGETS"].split(",")
    emulator.faults.down("keyvault")
    summary = BackupService.from_environment().run_scheduled()
    emulator.faults.clear()
    assert [r.error_code for r in summary.results] == ["azure_request_failed"] * 2
    assert all("Key Vault" in r.error_message for r in summary.results)
    assert_nothing_lost(BackupService.from_environment(), emulator, targets)


def test_a_disabled_secret_says_so(app_env, emulator):
    name = app_env["STORAGE_SECRET_NAME"]
    client = secret_client(emulator)
    original = client.get_secret(name)
    value = original.value
    client.set_secret(name, value, enabled=False)
    try:
        summary = BackupService.from_environment().run_scheduled()
    finally:
        client.set_secret(name, value, content_type=original.properties.content_type)
    assert {r.error_code for r in summary.results} == {"secret_not_found"}
    assert "disabled" in summary.results[0].error_message and value not in summary.results[0].error_message


def test_a_sas_that_expires_while_the_backup_runs_fails_it_clearly(service, emulator, target):
    job = service.start_backup(target, "timer")
    emulator.storage_auth.sas_clock_offset = dt.timedelta(hours=3)  # Storage's clock passes the SAS expiry
    try:
        job = service.follow(job)
    finally:
        emulator.storage_auth.sas_clock_offset = dt.timedelta()
    assert job.status == "failed" and job.error_code == "backup_failed"
    assert "StorageAccessDenied" in job.error_message and "sig=" not in job.error_message
    assert_nothing_lost(service, emulator, [target])


def test_storage_503_while_listing_is_retried(service, emulator, target):
    emulator.faults.fail_next("file", 503, count=2, method="GET", path=r"^/mccfbackupemu/?$")
    job = service.backup(target, "timer")
    assert job.status == "succeeded", job.error_message
    assert emulator.faults.count("file", "GET", r"^/mccfbackupemu/?$", status=503) == 2
    assert_nothing_lost(service, emulator, [target])


def test_storage_failing_while_tagging_keeps_the_job_finishing_until_it_can(service, emulator, target):
    app = target.rsplit("/", 1)[-1]
    emulator.faults.fail_next("file", 503, count=None, method="PUT", path=rf"^/mccfbackupemu/{app}-\d{{14}}$")
    job = service.start_backup(target, "timer")
    deadline = time.monotonic() + 60
    while not (job.state == "finishing" and job.last_error):
        assert time.monotonic() < deadline and not job.done, job
        time.sleep(0.3)
        job = service.poll(job.id)
    assert "azure_request_failed" in job.last_error and not job.done  # not lost: it goes on, a little later
    assert list(shares_of(emulator, app).values()) == [{}]  # the share exists, untagged
    emulator.faults.clear()
    jobs = assert_nothing_lost(service, emulator, [target])[target]
    assert [(j.id, j.status) for j in jobs] == [(job.id, "succeeded")]


def test_a_run_that_died_after_starting_a_backup_is_joined_by_the_next_run(app_env, emulator, target):
    first = BackupService.from_environment()
    emulator.arm.options.operation_seconds = 3.0  # still running when the next run starts
    try:
        abandoned = first.start_backup(target, "timer")  # the instance dies here: nobody follows it
        other = app_env["MCCF_TARGETS"].split(",")[1]
        summary = BackupService.from_environment().run_scheduled()
    finally:
        emulator.arm.options.operation_seconds = 0.3
    assert not summary.failed, summary.text()
    joined = {r.target: r for r in summary.results}
    assert joined[target].joined and joined[target].job.id == abandoned.id  # no second backup while ARM runs one
    assert not joined[other].joined
    service = BackupService.from_environment()
    jobs = assert_nothing_lost(service, emulator, [target, other])
    finished = service.jobs.get(abandoned.id)
    assert finished.status == "succeeded" and finished.share
    assert [j.id for j in jobs[target]] == [abandoned.id]


def ghost(service: BackupService, target: str) -> Job:
    """A backup recorded under the target's lease by an instance that died before it asked ARM."""
    job = Job(new_job_id(), "backup", target, "timer")
    assert service.run.leases.acquire(target, job.id, "backup") is None
    return service.operations.record(job)


def test_a_run_that_died_before_asking_arm_is_started_by_the_sweeper(service, emulator, target, monkeypatch):
    job = ghost(service, target)
    assert service.sweep().advanced == 0  # just recorded: its starter may be at work
    shift = dt.timedelta(minutes=3)  # overdue, and still within its deadline
    monkeypatch.setattr(clock, "utcnow", lambda: dt.datetime.now(dt.timezone.utc) + shift)
    assert service.sweep().advanced == 1
    assert service.jobs.get(job.id).state == "running"
    jobs = assert_nothing_lost(service, emulator, [target])[target]
    assert [(j.id, j.status) for j in jobs] == [(job.id, "succeeded")]


def test_a_run_that_died_before_asking_arm_is_abandoned_once_too_late(service, emulator, target, monkeypatch):
    job = ghost(service, target)
    later = clock.utcnow() + dt.timedelta(hours=2)
    monkeypatch.setattr(clock, "utcnow", lambda: later)
    assert service.sweep().ended == 1
    jobs = assert_nothing_lost(service, emulator, [target])[target]
    assert [(j.id, j.status, j.error_code) for j in jobs] == [(job.id, "failed", "operation_abandoned")]
    assert not backup_operations(emulator, target)  # nothing was sent to ARM so late


def test_a_lost_operation_that_never_writes_a_share_ends_within_the_grace(app_env, emulator, target, monkeypatch):
    # The soak's stall: the operation fails and ARM forgets it, so no share ever comes. The job is
    # watched by its share for LOST_OPERATION_GRACE_SECONDS, not the whole operation lifetime.
    service = BackupService.from_environment()
    emulator.faults.fail_next_operation("backup", code="InternalError", message="Node unavailable.")
    emulator.faults.fail_next("arm", 404, method="GET", path=r"/operationStatuses/", count=None, code="NotFound")
    job = service.start_backup(target, "timer")
    time.sleep(1)
    job = service.poll(job.id)
    assert job.state == "running" and job.watch == "share"
    later = clock.utcnow() + dt.timedelta(seconds=service.settings.lost_operation_grace_seconds + 1)
    monkeypatch.setattr(clock, "utcnow", lambda: later)
    job = service.operations.advance(job.id)
    assert job.status == "failed" and job.error_code == "operation_abandoned", job.error_message
    assert "LOST_OPERATION_GRACE_SECONDS" in job.error_message
    emulator.faults.clear()
    monkeypatch.undo()
    assert_nothing_lost(service, emulator, [target])


def test_a_status_url_that_fails_forever_ends_the_backup_at_its_deadline(service, emulator, target, monkeypatch):
    emulator.faults.fail_next("arm", 400, method="GET", path=r"/operationStatuses/", count=None, code="BadRequest")
    job = service.start_backup(target, "timer")
    time.sleep(1)
    job = service.poll(job.id)
    assert job.state == "running" and "azure_request_failed" in (job.last_error or "")
    later = clock.utcnow() + dt.timedelta(minutes=service.settings.operation_timeout_minutes + 1)
    monkeypatch.setattr(clock, "utcnow", lambda: later)
    job = service.poll(job.id)
    assert (job.state, job.error_code) == ("abandoned", "operation_timed_out")
    emulator.faults.clear()
    monkeypatch.undo()
    assert service.run.leases.holder(target) is None  # the next backup is not blocked
    assert_nothing_lost(service, emulator, [target])  # its share, written meanwhile, is adopted
