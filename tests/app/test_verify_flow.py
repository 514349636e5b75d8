"""Verification in the product: CLI with progress, the verify timer, HTTP 202, the verdict used downstream."""

from __future__ import annotations

import io
import json

from azure.storage.fileshare import ShareServiceClient

from mccf_backup.cli import main as cli_main
from mccf_backup.service import BackupService

from ..emulator.helpers import mgmt_client
from .test_http_api import assert_problem, poll_like_logic_apps


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli_main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def use_fixture(emulator, target: str, fixture: str = "expired_service", chunks: int = 1) -> None:
    emulator.arm.get(target)["ledger"].update(fixture=fixture, chunks=chunks)


def share_client(emulator, share: str):
    return ShareServiceClient.from_connection_string(emulator.connection_string()).get_share_client(share)


def test_cli_verify_reports_progress_and_the_verdict_reaches_catalog_and_status(api, app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    app = target.rsplit("/", 1)[1]
    use_fixture(emulator, target, chunks=3)
    share = BackupService.from_environment().backup(target, "cli").share
    code, out, err = run_cli("verify", "--target", app)
    assert code == 0, out + err
    assert f"{share}: VALID" in out and "signatures verified: 7" in out and "2.26" in out
    assert "MiB" in err and "#" in err  # the progress bar over bytes
    metadata = share_client(emulator, share).get_share_properties().metadata
    assert metadata["mccfbackup_verified"] == "true" and metadata["mccfbackup_last_seqno"] == "26"
    listing = api("GET", "backups", params={"target": app}).json()["backups"]
    assert listing[0]["verified"] is True
    status = {t["target"]: t for t in api("GET", "status").json()["targets"]}[target]
    assert status["newestVerifiedBackup"]["share"] == share
    jobs = [j for j in BackupService.from_environment().list_jobs(target) if j.kind == "verify"]
    assert jobs[0].status == "succeeded" and "26" in jobs[0].reason


def test_the_verify_timer_verifies_new_backups_and_queued_http_requests(api, app_env, emulator):
    first, second = app_env["MCCF_TARGETS"].split(",")
    service = BackupService.from_environment()
    made = {service.backup(first, "timer").share, service.backup(second, "timer").share}
    queued_share = service.backup(first, "cli").share
    accepted = api("POST", f"backups/{queued_share}/verify", json={"target": first})
    assert accepted.status_code == 202, accepted.text
    still = __import__("requests").get(accepted.headers["Location"], timeout=30)
    assert still.status_code == 202  # nothing runs inside the request; the timer does the work
    from function_app import app
    from devhost.devserver import functions_of

    (verify_timer,) = [f for f in functions_of(app) if f.get_function_name() == "scheduled_verify"]
    from azure.functions.timer import TimerRequest

    verify_timer.get_user_function()(TimerRequest())
    done = poll_like_logic_apps(still)
    assert done.status_code == 200 and done.json()["kind"] == "verify" and done.json()["share"] == queued_share
    for share in made | {queued_share}:
        assert share_client(emulator, share).get_share_properties().metadata["mccfbackup_verified"] == "true"
    assert_problem(api("POST", "backups/Bad_Share/verify", json={"target": first}), 400, "invalid_share_name")


def test_a_corrupted_backup_fails_verification_and_is_treated_as_such(api, app_env, emulator, caplog):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    rg, app = target.split("/")[4], target.rsplit("/", 1)[1]
    use_fixture(emulator, target, chunks=3)
    service = BackupService.from_environment()
    good = service.backup(target, "cli").share
    assert run_cli("verify", "--target", app, "--share", good)[0] == 0
    bad = service.backup(target, "cli").share
    chunk = share_client(emulator, bad).get_file_client("ledger/ledger_5-15.committed")
    data = bytearray(chunk.download_file().readall())
    data[len(data) // 3] ^= 0x01
    chunk.upload_file(bytes(data))
    code, out, _ = run_cli("verify", bad)  # the target is found from the share's name
    assert code == 1 and f"{bad}: INVALID" in out and "reason:" in out
    assert share_client(emulator, bad).get_share_properties().metadata["mccfbackup_verified"] == "false"
    assert any("verify.failure" in r.getMessage() for r in caplog.records)
    mgmt_client(emulator).managed_ccf.begin_delete(rg, app).result()
    check = api("POST", "restores", json={"target": app, "share": bad, "dryRun": True}).json()
    verified = next(c for c in check["checks"] if c["check"] == "backup_verified")
    assert check["ok"] is False and verified["ok"] is False and "FAILED" in verified["detail"]
    newest = api("POST", "restores", json={"target": app, "dryRun": True}).json()
    assert newest["share"] == good  # the newest *good* backup skips the corrupt one
    plan = {d.share: d for d in service.prune(target, override=True)[0].plan.decisions}
    assert not plan[bad].delete and "failed verification: kept as evidence" in plan[bad].reasons


def test_a_missing_tail_is_caught_against_the_previous_verified_backup(app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[1]
    app = target.rsplit("/", 1)[1]
    use_fixture(emulator, target, chunks=2)
    service = BackupService.from_environment()
    earlier = service.backup(target, "cli").share
    assert service.verify(target, earlier)[1].valid
    later = service.backup(target, "cli").share
    for name in ("ledger_16-26.committed", "ledger_5-15.committed"):
        share_client(emulator, later).get_file_client(f"ledger/{name}").delete_file()
    code, out, _ = run_cli("--json", "verify", "--target", app, "--share", later)
    report = json.loads(out)["report"]
    assert code == 1 and report["verdict"] == "invalid"
    assert any("missing tail" in reason and earlier in reason for reason in report["reasons"])
