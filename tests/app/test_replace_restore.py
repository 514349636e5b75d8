"""Replacing a live instance: only when allowed, confirmed by name, from the newest good backup; two jobs."""

from __future__ import annotations

import io

from mccf_backup.cli import main as cli_main
from mccf_backup.service import BackupService

from ..emulator.helpers import mgmt_client
from .test_http_api import assert_problem, poll_like_logic_apps


def two_backups(target: str) -> tuple[str, str]:
    service = BackupService.from_environment()
    older = service.backup(target, "cli").share
    newer = service.backup(target, "cli").share
    return older, newer


def test_replace_is_refused_unless_allowed_confirmed_and_from_the_newest_backup(api, app_env, emulator, monkeypatch):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    app = target.rsplit("/", 1)[1]
    older, newer = two_backups(target)
    deletes_before = emulator.faults.count("arm", "DELETE")
    assert_problem(
        api("POST", "restores", json={"target": app, "replace": True, "confirm": app}), 403, "replace_not_allowed"
    )
    monkeypatch.setenv("ALLOW_REPLACE_RESTORE", "true")
    assert_problem(api("POST", "restores", json={"target": app, "replace": True}), 400, "replace_not_confirmed")
    assert_problem(
        api("POST", "restores", json={"target": app, "replace": True, "confirm": app.upper()}),
        400,
        "replace_not_confirmed",
    )
    assert_problem(
        api("POST", "restores", json={"target": app, "replace": True, "confirm": app, "share": older}),
        409,
        "replace_needs_newest_backup",
    )
    dry = api("POST", "restores", json={"target": app, "replace": True, "confirm": app, "dryRun": True}).json()
    assert dry["ok"] is True and dry["replacesLiveInstance"] is True and dry["share"] == newer
    assert emulator.faults.count("arm", "DELETE") == deletes_before  # nothing was deleted by any refusal


def test_replace_restore_over_http_deletes_then_restores_and_records_two_jobs(api, app_env, emulator, monkeypatch):
    monkeypatch.setenv("ALLOW_REPLACE_RESTORE", "true")
    target = app_env["MCCF_TARGETS"].split(",")[0]
    rg, app = target.split("/")[4], target.rsplit("/", 1)[1]
    _, newer = two_backups(target)
    accepted = api("POST", "restores", json={"target": app, "replace": True, "confirm": app})
    assert accepted.status_code == 202, accepted.text
    done = poll_like_logic_apps(accepted)
    assert done.status_code == 200, done.text
    assert done.json()["share"] == newer and done.json()["kind"] == "restore"
    assert mgmt_client(emulator).managed_ccf.get(rg, app).properties.provisioning_state == "Succeeded"
    jobs = BackupService.from_environment().list_jobs(target, limit=10)
    delete = next(j for j in jobs if j.kind == "delete_instance")
    restore = next(j for j in jobs if j.kind == "restore")
    assert delete.status == "succeeded" and delete.related_job == restore.id and restore.related_job == delete.id
    assert "replace-restore" in delete.reason
    restored_from = emulator.arm.get(target)["restoredFrom"]["fileShareName"]
    assert restored_from == newer


def test_replace_restore_from_the_cli(app_env, emulator, monkeypatch):
    monkeypatch.setenv("ALLOW_REPLACE_RESTORE", "true")
    target = app_env["MCCF_TARGETS"].split(",")[1]
    rg, app = target.split("/")[4], target.rsplit("/", 1)[1]
    two_backups(target)
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["restore", "--target", app, "--replace", "--confirm", app, "--wait"], out=out, err=err) == 0, (
        err.getvalue()
    )
    assert "restore succeeded" in out.getvalue()
    assert mgmt_client(emulator).managed_ccf.get(rg, app).properties.provisioning_state == "Succeeded"
