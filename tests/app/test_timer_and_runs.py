"""The scheduled run through the timer function, and what one run costs in Key Vault reads and tokens."""

from __future__ import annotations

import logging
import re

from azure.functions.timer import TimerRequest
import pytest
from azure.storage.fileshare import ShareServiceClient

from mccf_backup.identity import reset_credentials
from mccf_backup.service import BackupService

from ..emulator.helpers import new_instance


def timer_function():
    from function_app import app
    from scripts.devserver import functions_of

    (function,) = [f for f in functions_of(app) if f.get_function_name() == "scheduled_backup"]
    return function.get_user_function()


def test_scheduled_run_with_one_failing_target_backs_up_the_other_and_fails_the_invocation(app_env, emulator, caplog):
    good, bad = app_env["MCCF_TARGETS"].split(",")
    emulator.faults.fail_next(
        "arm", 403, code="AuthorizationFailed", method="POST", path=re.escape(bad) + "/backup$", count=None
    )
    caplog.set_level(logging.INFO)
    with pytest.raises(Exception, match="1 of 2 targets failed") as info:
        timer_function()(TimerRequest(past_due=True))
    assert info.type.__name__ == "ScheduledBackupFailed"
    assert "running late" in caplog.text  # the past-due run is logged as such, and still ran
    assert "Scheduled backup: 1 of 2 targets succeeded." in caplog.text
    jobs = {job.target: job for job in BackupService.from_environment().list_jobs()}
    assert jobs[good].status == "succeeded" and jobs[good].trigger == "timer"
    assert jobs[bad].status == "failed" and jobs[bad].error_code == "permission_denied"
    share = ShareServiceClient.from_connection_string(emulator.connection_string()).get_share_client(jobs[good].share)
    assert share.get_share_properties().metadata["mccfbackup_trigger"] == "timer"


def test_a_run_reads_key_vault_once_and_gets_one_token_per_audience(app_env, emulator, monkeypatch):
    more = [new_instance(emulator, rg="rg-count") for _ in range(3)]
    sub = emulator.env["AZURE_SUBSCRIPTION_ID"]
    targets = app_env["MCCF_TARGETS"].split(",") + [
        f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ConfidentialLedger/managedCCFs/{app}"
        for rg, app in more
    ]
    monkeypatch.setenv("MCCF_TARGETS", ",".join(targets))
    monkeypatch.setenv("BACKUP_CONCURRENCY", "3")
    reset_credentials()
    tokens_before = emulator.faults.count("identity")
    vault_reads_before = emulator.faults.count("keyvault", "GET", r"^/secrets/", status=200)
    timer_function()(TimerRequest())
    assert emulator.faults.count("keyvault", "GET", r"^/secrets/", status=200) - vault_reads_before == 1
    # two audiences are used: ARM and Key Vault (storage is reached with the account key)
    assert emulator.faults.count("identity") - tokens_before == 2
    assert len({job.target for job in BackupService.from_environment().list_jobs() if job.status == "succeeded"}) == 5


def test_key_vault_outage_fails_every_target_clearly_and_records_it(app_env, emulator):
    emulator.faults.down("keyvault")
    with pytest.raises(Exception, match="2 of 2 targets failed"):
        timer_function()(TimerRequest())
    emulator.faults.clear()
    jobs = BackupService.from_environment().list_jobs()
    assert {job.status for job in jobs} == {"failed"} and len(jobs) == 2
    assert all(job.error_code == "azure_request_failed" for job in jobs)
