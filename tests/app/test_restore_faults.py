"""Restore under the faults a backup already survives: a lost answer to the restore or to a
replace-restore's delete, and a replace-restore whose deadline passes while its delete runs."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest

from mccf_backup import clock
from mccf_backup.restore_checks import RestoreRequest
from mccf_backup.service import BackupService

from ..emulator.helpers import mgmt_client


def app_of(target: str) -> str:
    return target.rsplit("/", 1)[1]


def delete_instance(emulator, target: str) -> None:
    mgmt_client(emulator).managed_ccf.begin_delete(target.split("/")[4], app_of(target)).result()


def restores(emulator, target: str) -> int:
    return emulator.faults.count("arm", "POST", re.escape(target) + "/restore$")


def test_a_restore_whose_answer_is_lost_follows_the_instance_arm_restores(service, emulator, target):
    assert service.backup(target, "cli").status == "succeeded"
    delete_instance(emulator, target)
    emulator.faults.fail_next("arm", 500, method="POST", path=re.escape(target) + "/restore$", after=True)
    job = service.start_restore(RestoreRequest(app_of(target), trigger="http"))
    assert job.state == "running" and job.watch == "instance"  # ARM acted: the instance is there
    job = service.follow(job)
    assert (job.status, job.error_code) == ("succeeded", None)
    assert restores(emulator, target) == 1  # not asked twice: the instance said it had started
    assert emulator.arm.get(target)["provisioningState"] == "Succeeded"


def test_a_restore_whose_first_request_arm_never_saw_is_asked_once_more(service, emulator, target):
    assert service.backup(target, "cli").status == "succeeded"
    delete_instance(emulator, target)
    emulator.faults.fail_next("arm", 503, method="POST", path=re.escape(target) + "/restore$")  # before acting
    job = service.follow(service.start_restore(RestoreRequest(app_of(target), trigger="http")))
    assert job.status == "succeeded"
    assert restores(emulator, target) == 2 and emulator.arm.get(target)["provisioningState"] == "Succeeded"


def test_a_replace_restore_whose_delete_answer_is_lost_still_restores(service, emulator, target, monkeypatch):
    monkeypatch.setenv("ALLOW_REPLACE_RESTORE", "true")
    service = BackupService.from_environment()
    assert service.backup(target, "cli").status == "succeeded"
    emulator.faults.fail_next("arm", 500, method="DELETE", path=re.escape(target) + "$", after=True, count=None)
    job = service.start_restore(RestoreRequest(app_of(target), replace=True, confirm=app_of(target), trigger="http"))
    assert job.state == "running" and job.watch == "instance"  # the instance is Deleting: the delete was acted on
    emulator.faults.clear()
    job = service.follow(job)
    assert job.status == "succeeded", job.error_message
    assert emulator.arm.get(target)["provisioningState"] == "Succeeded"  # never left deleted
    delete = service.jobs.get(job.related_job)
    assert (delete.kind, delete.status) == ("delete_instance", "succeeded")


def test_a_refused_delete_fails_the_replace_restore_and_deletes_nothing(service, emulator, target, monkeypatch):
    monkeypatch.setenv("ALLOW_REPLACE_RESTORE", "true")
    service = BackupService.from_environment()
    assert service.backup(target, "cli").status == "succeeded"
    emulator.deny(emulator.system_identity.client_id, {"Microsoft.ConfidentialLedger/managedCCFs/delete"})
    with pytest.raises(Exception) as info:
        service.start_restore(RestoreRequest(app_of(target), replace=True, confirm=app_of(target), trigger="http"))
    assert getattr(info.value, "code", None) == "permission_denied"
    assert emulator.arm.get(target)["provisioningState"] == "Succeeded"
    (delete,) = [j for j in service.list_jobs(target) if j.kind == "delete_instance"]
    assert delete.status == "failed"  # no record left running
    assert service.run.leases.holder(target) is None


def test_a_replace_restore_past_its_deadline_while_deleting_sends_the_restore_and_follows_it(
    service, emulator, target, monkeypatch
):
    monkeypatch.setenv("ALLOW_REPLACE_RESTORE", "true")
    service = BackupService.from_environment()
    assert service.backup(target, "cli").status == "succeeded"
    job = service.start_restore(RestoreRequest(app_of(target), replace=True, confirm=app_of(target), trigger="http"))
    time.sleep(1.5)  # the delete has ended in ARM; nobody has looked yet
    shift = dt.timedelta(minutes=61)
    monkeypatch.setattr(clock, "utcnow", lambda: dt.datetime.now(dt.timezone.utc) + shift)
    job = service.poll(job.id)
    assert (job.state, job.phase) == ("running", "restoring"), (job.state, job.error_code)  # not abandoned
    assert job.deadline >= clock.utcnow() + dt.timedelta(minutes=55)  # a new operation: its whole lifetime
    job = service.follow(job)
    assert job.status == "succeeded" and restores(emulator, target) == 1
