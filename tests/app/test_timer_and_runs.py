"""The scheduled run through the timer function: it starts every target and returns; what one run
costs in Key Vault reads and tokens; and every log line of it reaches the host with its invocation."""

from __future__ import annotations

import logging
import re
import threading
import uuid

import pytest
from azure.functions.timer import TimerRequest
from azure.storage.fileshare import ShareServiceClient

from mccf_backup.identity import reset_credentials
from mccf_backup.service import BackupService
from devhost.invocation import current_invocation_id, invoke

from .invariants import backup_operations, finish_running


def timer_function(name: str = "scheduled_backup"):
    """The timer function, called as the worker calls it (with its invocation context)."""
    from function_app import app
    from devhost.devserver import functions_of

    (function,) = [f for f in functions_of(app) if f.get_function_name() == name]
    return lambda request: invoke(function, timer=request)


def more_targets(emulator, app_env, monkeypatch, count: int) -> list[str]:
    added = [emulator.add_instance("rg-count", f"app-{uuid.uuid4().hex[:8]}") for _ in range(count)]
    targets = app_env["MCCF_TARGETS"].split(",") + added
    monkeypatch.setenv("MCCF_TARGETS", ",".join(targets))
    return targets


def test_scheduled_run_starts_every_target_returns_and_fails_the_invocation_for_one_refused(app_env, emulator, caplog):
    good, bad = app_env["MCCF_TARGETS"].split(",")
    emulator.arm.options.operation_seconds = 3  # still running when the timer returns
    emulator.faults.fail_next(
        "arm", 403, code="AuthorizationFailed", method="POST", path=re.escape(bad) + "/backup$", count=None
    )
    caplog.set_level(logging.INFO)
    try:
        with pytest.raises(Exception, match="1 of 2 targets failed") as info:
            timer_function()(TimerRequest(past_due=True))
    finally:
        emulator.arm.options.operation_seconds = 0.3
    assert info.type.__name__ == "ScheduledBackupFailed"
    assert "running late" in caplog.text  # the past-due run is logged as such, and still ran
    assert "Scheduled backup: 1 of 2 targets started, 1 failed to start." in caplog.text
    service = BackupService.from_environment()
    jobs = {job.target: job for job in service.list_jobs()}
    assert jobs[good].status == "running", "the timer returned without waiting for the operation"
    assert jobs[bad].status == "failed" and jobs[bad].error_code == "permission_denied"
    finish_running(service, [good])
    done = service.jobs.get(jobs[good].id)
    assert done.status == "succeeded" and done.trigger == "timer"
    share = ShareServiceClient.from_connection_string(emulator.connection_string()).get_share_client(done.share)
    assert share.get_share_properties().metadata["mccfbackup_trigger"] == "timer"


def test_a_run_reads_key_vault_once_and_gets_one_token_per_audience(app_env, emulator, monkeypatch):
    targets = more_targets(emulator, app_env, monkeypatch, 3)
    monkeypatch.setenv("BACKUP_CONCURRENCY", "3")
    reset_credentials()
    tokens_before = emulator.faults.count("identity")
    vault_reads_before = emulator.faults.count("keyvault", "GET", r"^/secrets/", status=200)
    timer_function()(TimerRequest())
    assert emulator.faults.count("keyvault", "GET", r"^/secrets/", status=200) - vault_reads_before == 1
    # two audiences are used: ARM and Key Vault (storage is reached with the account key)
    assert emulator.faults.count("identity") - tokens_before == 2
    assert all(len(backup_operations(emulator, t)) == 1 for t in targets)
    service = BackupService.from_environment()
    finish_running(service, targets)
    assert len({job.target for job in service.list_jobs() if job.status == "succeeded"}) == 5


def test_key_vault_outage_fails_every_target_clearly_and_records_it(app_env, emulator):
    emulator.faults.down("keyvault")
    with pytest.raises(Exception, match="2 of 2 targets failed"):
        timer_function()(TimerRequest())
    emulator.faults.clear()
    jobs = BackupService.from_environment().list_jobs()
    assert {job.status for job in jobs} == {"failed"} and len(jobs) == 2
    assert all(job.error_code == "azure_request_failed" for job in jobs)


class HostLogs(logging.Handler):
    """What the Functions host receives: each record with the invocation id the worker finds for it
    (the thread-local of the thread that logs, exactly as the worker's log handler reads it)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[logging.LogRecord, str | None]] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append((record, current_invocation_id()))


@pytest.fixture
def host_logs():
    handler = HostLogs()
    engine = logging.getLogger("mccf_backup")
    engine.addHandler(handler)
    old_level = engine.level
    engine.setLevel(logging.INFO)
    yield handler
    engine.removeHandler(handler)
    engine.setLevel(old_level)


def test_every_per_target_log_line_of_a_scheduled_run_carries_its_invocation_id(
    app_env, emulator, monkeypatch, host_logs
):
    targets = more_targets(emulator, app_env, monkeypatch, 2)
    monkeypatch.setenv("BACKUP_CONCURRENCY", "4")
    bad = targets[-1]
    emulator.faults.fail_next(
        "arm", 403, code="AuthorizationFailed", method="POST", path=re.escape(bad) + "/backup$", count=None
    )
    with pytest.raises(Exception, match="1 of 4 targets failed"):
        timer_function()(TimerRequest())
    on_workers = [(r, i) for r, i in host_logs.records if r.threadName.startswith("mccf-backup")]
    assert len({r.threadName for r, _ in on_workers}) >= 2, "the run used no worker threads: the test proves nothing"
    assert any("backup.attempt" in r.getMessage() for r, _ in on_workers)
    assert any(r.levelno >= logging.WARNING for r, _ in on_workers)  # the refused target's failure
    ids = {i for _, i in host_logs.records}
    assert None not in ids, [r.getMessage() for r, i in host_logs.records if i is None][:5]
    assert len(ids) == 1  # every line, on every thread, belongs to the one invocation


def test_the_same_run_without_the_invocation_context_would_lose_its_worker_logs(app_env, emulator, host_logs):
    """The control: the engine's worker threads carry no invocation id unless the function hands it on."""
    BackupService.from_environment().run_scheduled("timer", setup=None)
    lost = [r for r, i in host_logs.records if i is None and r.threadName.startswith("mccf-backup")]
    assert lost, "worker-thread logs got an invocation id without being given one"
