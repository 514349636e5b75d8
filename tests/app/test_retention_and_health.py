"""Retention, protection, restore dry runs and health end to end, with time moved on both sides."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.fileshare import ShareServiceClient

from mccf_backup import clock
from mccf_backup.service import BackupService

from ..emulator.helpers import mgmt_client

# A Friday at noon: the same calendar as the unit test of the GFS rules.
BASE = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def travel(emulator, monkeypatch):
    """Move the engine's and the emulator's resource time together: the engine reads the emulator's
    movable clock itself, so the two never drift apart however slow the machine (SAS and tokens stay
    on real time)."""

    def to(at: dt.datetime) -> None:
        emulator.clock.reset()
        emulator.clock.advance(seconds=(at - dt.datetime.now(dt.timezone.utc)).total_seconds())

    monkeypatch.setattr(clock, "utcnow", emulator.clock.now)
    to(BASE)
    return to


def shares(emulator, prefix: str = "") -> set[str]:
    service = ShareServiceClient.from_connection_string(emulator.connection_string())
    return {s.name for s in service.list_shares(name_starts_with=prefix)}


def daily_backups(service: BackupService, target: str, travel, days: int) -> dict[int, str]:
    made = {}
    for day in range(days - 1, -1, -1):
        travel(BASE - dt.timedelta(days=day, hours=1))
        job = service.backup(target, "timer")
        assert job.status == "succeeded", job.error_message
        made[day] = job.share
    travel(BASE)
    return made


def set_policy(monkeypatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"RETENTION_{name}", value)


def test_a_month_of_daily_backups_pruned_by_gfs_leaves_exactly_the_expected_set(app_env, emulator, travel, monkeypatch):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    set_policy(
        monkeypatch, KEEP_LAST="3", DAILY="7", WEEKLY="4", MONTHLY="2", MIN_AGE_HOURS="0", MAX_DELETE_FRACTION="1"
    )
    made = daily_backups(BackupService.from_environment(), target, travel, 31)
    dry = BackupService.from_environment().prune(apply=False)
    assert shares(emulator, target.rsplit("/", 1)[1]) == set(made.values())  # a dry run deletes nothing
    assert {d.share for d in dry[0].plan.deletions} == {
        made[d] for d in made if d not in {0, 1, 2, 3, 4, 5, 6, 12, 19, 27}
    }
    results = BackupService.from_environment().prune(apply=True, trigger="timer")
    expected = {made[day] for day in (0, 1, 2, 3, 4, 5, 6, 12, 19, 27)}
    assert shares(emulator, target.rsplit("/", 1)[1]) == expected
    deletions = [job for result in results for job in result.jobs]
    assert len(deletions) == 21 and all(job.status == "succeeded" and job.reason for job in deletions)
    recorded = [j for j in BackupService.from_environment().list_jobs(target, limit=100) if j.kind == "delete"]
    assert {j.share for j in recorded} == set(made.values()) - expected


def test_a_leased_backup_survives_an_accidental_delete(app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    job = BackupService.from_environment().backup(target, "cli")
    client = ShareServiceClient.from_connection_string(emulator.connection_string()).get_share_client(job.share)
    assert client.get_share_properties().lease.state == "leased"
    with pytest.raises(HttpResponseError) as info:
        client.delete_share()
    assert info.value.error_code == "LeaseIdMissing"
    assert job.share in shares(emulator)


def test_the_newest_good_backup_survives_a_policy_that_deletes_everything(app_env, emulator, travel, monkeypatch):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    made = daily_backups(BackupService.from_environment(), target, travel, 4)
    set_policy(
        monkeypatch, KEEP_LAST="0", DAILY="0", WEEKLY="0", MONTHLY="0", MIN_AGE_HOURS="0", MAX_DELETE_FRACTION="1"
    )
    BackupService.from_environment().prune(apply=True)
    assert shares(emulator, target.rsplit("/", 1)[1]) == {made[0]}


def test_the_deletion_cap_stops_a_runaway_policy_until_overridden(app_env, emulator, travel, monkeypatch):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    made = daily_backups(BackupService.from_environment(), target, travel, 4)
    set_policy(monkeypatch, KEEP_LAST="0", DAILY="0", WEEKLY="0", MONTHLY="0", MIN_AGE_HOURS="0")
    (capped,) = BackupService.from_environment().prune(target, apply=True)
    assert capped.plan.capped and not capped.jobs
    assert shares(emulator, target.rsplit("/", 1)[1]) == set(made.values())
    BackupService.from_environment().prune(target, apply=True, override=True)
    assert shares(emulator, target.rsplit("/", 1)[1]) == {made[0]}


def test_a_foreign_share_in_the_same_account_is_never_touched(app_env, emulator, travel, monkeypatch):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    app = target.rsplit("/", 1)[1]
    service = ShareServiceClient.from_connection_string(emulator.connection_string())
    foreign = {f"{app}-20200101000000", f"{app}x-20200101000000", "payroll-archive"}
    for name in foreign:
        service.create_share(name)
    service.create_share(f"{app}-20200202000000", metadata={"mccfbackup_target": "/subscriptions/other/x"})
    foreign.add(f"{app}-20200202000000")
    daily_backups(BackupService.from_environment(), target, travel, 2)
    set_policy(
        monkeypatch, KEEP_LAST="0", DAILY="0", WEEKLY="0", MONTHLY="0", MIN_AGE_HOURS="0", MAX_DELETE_FRACTION="1"
    )
    (result,) = BackupService.from_environment().prune(target, apply=True, override=True)
    assert foreign <= shares(emulator)
    reasons = {d.share: d.reasons for d in result.plan.decisions}
    assert "never touched" in reasons[f"{app}-20200101000000"][0]


def test_dry_run_restore_of_an_89_and_a_91_day_old_backup(api, app_env, emulator, travel):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    rg, app = target.split("/")[4], target.rsplit("/", 1)[1]
    service = BackupService.from_environment()
    travel(BASE - dt.timedelta(days=91))
    old = service.backup(target, "timer").share
    travel(BASE - dt.timedelta(days=89))
    recent = service.backup(target, "timer").share
    travel(BASE)
    mgmt_client(emulator).managed_ccf.begin_delete(rg, app).result()
    restores_before = emulator.faults.count("arm", "POST", "/restore$")

    ok = api("POST", "restores", json={"target": app, "share": recent, "dryRun": True})
    assert ok.status_code == 200, ok.text
    assert ok.json()["ok"] is True and ok.json()["backup"]["restorable"] is True
    assert {c["check"] for c in ok.json()["checks"]} == {
        "backup_exists",
        "backup_age",
        "backup_verified",
        "instance_absent",
        "restore_region",
    }

    too_old = api("POST", "restores", json={"target": app, "share": old, "dryRun": True}).json()
    assert too_old["ok"] is False
    age = next(c for c in too_old["checks"] if c["check"] == "backup_age")
    assert age["code"] == "backup_too_old" and "91 days old" in age["detail"] and recent in age["detail"]
    assert emulator.faults.count("arm", "POST", "/restore$") == restores_before  # a dry run never restores


def test_status_and_health_flag_a_target_whose_schedule_stopped(api, app_env, emulator, travel, caplog):
    stopped, never = app_env["MCCF_TARGETS"].split(",")
    service = BackupService.from_environment()
    travel(BASE - dt.timedelta(days=85))
    closing = service.backup(stopped, "timer").share
    travel(BASE)
    report = {t["target"]: t for t in api("GET", "status").json()["targets"]}
    assert report[stopped]["withinRpo"] is False and report[stopped]["newestBackupAgeHours"] > 26
    assert report[stopped]["backupCount"] == 1 and report[stopped]["totalSizeBytes"] > 0
    assert report[stopped]["oldestRestorableBackup"]["share"] == closing
    assert report[never]["withinRpo"] is False and report[never]["backupCount"] == 0

    caplog.set_level(logging.INFO, logger="mccf_backup.events")
    findings = BackupService.from_environment().health()
    assert {(f["target"], f["event"]) for f in findings} == {
        (stopped, "health.rpo_breach"),
        (never, "health.rpo_breach"),
        (stopped, "health.restore_window_closing"),
    }
    events = [
        json.loads(r.getMessage().split(" ", 1)[1])
        for r in caplog.records
        if r.getMessage().startswith("MCCFBACKUP_EVENT")
    ]
    breach = next(e for e in events if e["event"] == "health.rpo_breach" and e["target"] == stopped)
    assert breach["rpoHours"] == 26 and breach["newestBackup"] == closing
    assert any(r.levelno == logging.ERROR and "health.rpo_breach" in r.getMessage() for r in caplog.records)
    window = next(e for e in events if e["event"] == "health.restore_window_closing")
    assert window["share"] == closing and window["daysLeft"] == 4
