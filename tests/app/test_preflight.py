"""The preflight against the emulator: every check passes when Azure is set up right, and each fails,
with its documented fix, when the emulator is made wrong the way a real subscription can be."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pytest

from emulator.runtime import STORAGE_SECRET_NAME
from mccf_backup.preflight_report import FAILED, OK, WARNING
from mccf_backup.service import BackupService

from ..emulator.helpers import file_service_sas_url

SCHEDULES = {
    "BACKUP_SCHEDULE": "0 0 2 * * *",
    "PRUNE_SCHEDULE": "0 30 3 * * *",
    "HEALTH_SCHEDULE": "0 15 * * * *",
    "VERIFY_SCHEDULE": "0 */10 * * * *",
    "SWEEP_SCHEDULE": "0 */5 * * * *",
}
BACKUP = "Microsoft.ConfidentialLedger/managedCCFs/backup/action"


@pytest.fixture
def preflight(app_env, monkeypatch):
    for name, value in SCHEDULES.items():
        monkeypatch.setenv(name, value)

    def run() -> dict[str, list[dict]]:
        report = BackupService.from_environment().preflight().to_dict()
        by_name: dict[str, list[dict]] = {}
        for check in report["checks"]:
            by_name.setdefault(check["name"], []).append(check)
        by_name["_report"] = [report]
        return by_name

    return run


@contextlib.contextmanager
def secret_holding(emulator, value: str, **attributes):
    """The storage secret's current version replaced for the block, then put back."""
    current = emulator.secrets.versions(STORAGE_SECRET_NAME)[-1]
    emulator.secrets.set(STORAGE_SECRET_NAME, value, **attributes)
    try:
        yield
    finally:
        emulator.secrets.set(STORAGE_SECRET_NAME, current["value"])


def only(checks: dict, name: str) -> dict:
    (check,) = checks[name]
    return check


def test_a_well_set_up_deployment_passes_every_check(preflight, app_env, emulator):
    checks = preflight()
    for name in ("identity", "key_vault", "storage", "soft_delete", "job_store", "queues", "api_auth"):
        assert only(checks, name)["status"] == OK, only(checks, name)
    assert "system-assigned managed identity" in only(checks, "identity")["found"]
    assert [c["status"] for c in checks["schedule"]] == [OK] * 5
    backup_schedule = next(c for c in checks["schedule"] if c["details"]["setting"] == "BACKUP_SCHEDULE")
    assert len(backup_schedule["details"]["next"]) == 3 and all(
        t.endswith("02:00:00+00:00") for t in backup_schedule["details"]["next"]
    )
    targets = app_env["MCCF_TARGETS"].split(",")
    assert {c["target"] for c in checks["target"] if c["status"] == OK} == set(targets)
    assert {c["target"] for c in checks["permissions"] if c["status"] == OK} == set(targets)
    # a first deployment has no backup yet: a warning that says how to take one, not a failure
    assert {c["status"] for c in checks["recovery_point"]} == {WARNING}
    assert all("preflight --canary" in c["fix"] for c in checks["recovery_point"])
    assert checks["_report"][0]["status"] == WARNING and checks["_report"][0]["counts"][FAILED] == 0


def test_a_verified_recent_backup_is_a_good_recovery_point(preflight, app_env, service):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    job = service.backup(target, "cli")
    _, report = service.verify(target, job.share)
    assert report.valid
    point = next(c for c in preflight()["recovery_point"] if c["target"] == target)
    assert point["status"] == OK and "verified, restorable 89 more days" in point["found"]


def test_a_denied_role_action_fails_with_the_assignment_to_make(preflight, app_env, emulator):
    emulator.deny(emulator.system_identity.client_id, {BACKUP})
    failed = [c for c in preflight()["permissions"] if c["status"] == FAILED]
    assert len(failed) == 2 and all(c["details"]["missing"] == [BACKUP] for c in failed)
    assert (
        "az role assignment create --assignee" in failed[0]["fix"]
        and emulator.system_identity.object_id in failed[0]["fix"]
    )
    assert "az provider operation show --namespace Microsoft.ConfidentialLedger" in failed[0]["fix"]


def test_replace_restore_needs_delete_too(preflight, app_env, emulator, monkeypatch):
    monkeypatch.setenv("ALLOW_REPLACE_RESTORE", "true")
    emulator.deny(emulator.system_identity.client_id, {"Microsoft.ConfidentialLedger/managedCCFs/delete"})
    failed = [c for c in preflight()["permissions"] if c["status"] == FAILED]
    assert failed and failed[0]["details"]["missing"] == ["Microsoft.ConfidentialLedger/managedCCFs/delete"]


def test_an_identity_with_no_role_at_all(preflight, emulator):
    emulator.deny(emulator.system_identity.client_id)
    checks = preflight()
    assert {c["status"] for c in checks["target"] + checks["permissions"]} == {FAILED}
    assert "docs/deploy.md" in checks["target"][0]["found"]  # ARM's 403, with where to read more
    assert only(checks, "soft_delete")["status"] == WARNING  # ARM would not show it: not the account's fault


@pytest.mark.parametrize(
    ("policy", "status", "says"),
    [
        (
            {"enabled": False, "days": 0},
            FAILED,
            "--account-name mccfbackupemu --resource-group rg-mccf-backup --enable-delete-retention true",
        ),
        ({"enabled": True, "days": 1}, WARNING, "--enable-delete-retention true --delete-retention-days 7"),
    ],
)
def test_share_soft_delete_off_or_too_short(preflight, emulator, policy, status, says):
    emulator.arm.options.share_soft_delete = policy
    check = only(preflight(), "soft_delete")
    assert check["status"] == status and says in check["fix"]


def test_a_disabled_secret_fails_and_storage_is_not_checked(preflight, emulator):
    with secret_holding(emulator, emulator.connection_string(), enabled=False):
        checks = preflight()
    key_vault = only(checks, "key_vault")
    assert key_vault["status"] == FAILED and "disabled" in key_vault["found"]
    assert "az keyvault secret set" in key_vault["fix"]
    assert only(checks, "storage")["status"] == FAILED and "recovery_point" not in checks


@pytest.mark.parametrize(
    ("minutes", "status", "says"),
    [(-60, FAILED, "expires at"), (60 * 24 * 3, WARNING, "less than 14 days after the next scheduled backup")],
)
def test_a_sas_secret_that_has_or_soon_will_expire(preflight, emulator, minutes, status, says):
    with secret_holding(emulator, file_service_sas_url(emulator, "rwdlc", minutes=minutes)):
        key_vault = only(preflight(), "key_vault")
    assert key_vault["status"] == status and says in key_vault["found"], key_vault


def test_a_missing_target_fails_with_what_to_fix(preflight, app_env, emulator, monkeypatch):
    gone = app_env["MCCF_TARGETS"].split(",")[0].rsplit("/", 1)[0] + "/app-notthere"
    monkeypatch.setenv("MCCF_TARGETS", app_env["MCCF_TARGETS"] + "," + gone)
    check = next(c for c in preflight()["target"] if c["target"] == gone)
    assert check["status"] == FAILED and "does not exist" in check["found"] and "MCCF_TARGETS" in check["fix"]


def test_a_backup_older_than_the_rpo_fails(preflight, app_env, service, emulator, monkeypatch):
    from mccf_backup import clock

    target = app_env["MCCF_TARGETS"].split(",")[0]
    service.backup(target, "cli")
    monkeypatch.setattr(clock, "utcnow", lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=30))
    point = next(c for c in preflight()["recovery_point"] if c["target"] == target)
    assert point["status"] == FAILED and "older than the 26 h RPO" in point["found"]


def test_a_missing_schedule_setting_fails(preflight, monkeypatch):
    monkeypatch.delenv("VERIFY_SCHEDULE")
    failed = [c for c in preflight()["schedule"] if c["status"] == FAILED]
    assert [c["details"]["setting"] for c in failed] == ["VERIFY_SCHEDULE"] and "Set VERIFY_SCHEDULE" in failed[0][
        "fix"
    ]


def test_the_report_holds_no_secret(preflight, emulator):
    text = json.dumps(preflight())
    account_key = emulator.connection_string().split("AccountKey=")[1].split(";")[0]
    assert account_key not in text and emulator.identity_header not in text and "sig=" not in text


def test_the_cli_shows_each_verdict_with_its_fix_and_exits_1_on_a_failure(preflight, emulator):
    from .test_cli import run

    emulator.deny(emulator.system_identity.client_id, {BACKUP})
    code, out, err = run("preflight")
    assert code == 1 and "[ FAIL ] permissions" in out and "fix: Assign your identity (the CLI runs as you)" in out
    assert "[  ok  ] identity" in out and out.rstrip().splitlines()[-1].startswith("FAILED:")
    code, out, _ = run("preflight", "--json")
    assert code == 1 and json.loads(out)["status"] == FAILED


def test_the_canary_backs_up_and_verifies_one_target_and_times_both(preflight, app_env):
    from .test_cli import run

    app = app_env["MCCF_TARGETS"].split(",")[0].rsplit("/", 1)[1]
    code, out, err = run("preflight", "--json", "--canary", app)
    assert code == 0, out + err
    (canary,) = [c for c in json.loads(out)["checks"] if c["name"] == "canary"]
    assert canary["status"] == OK and canary["details"]["share"].startswith(app + "-")
    assert canary["details"]["backupSeconds"] > 0 and canary["details"]["verifySeconds"] >= 0


def test_settings_that_do_not_load_are_one_failed_check_not_a_stack_trace(preflight, monkeypatch):
    from .test_cli import run

    monkeypatch.setenv("BACKUP_SCHEDULE", "every night at two")
    monkeypatch.delenv("KEY_VAULT_URL")
    code, out, err = run("preflight")
    assert code == 1 and "Traceback" not in out + err
    assert "[ FAIL ] settings" in out and "KEY_VAULT_URL is not set" in out and "BACKUP_SCHEDULE must be" in out


def test_the_api_serves_the_report_to_readers_and_runs_it_once_for_callers_that_ask_again(preflight, api, monkeypatch):
    import concurrent.futures

    from functions import http_api

    monkeypatch.setattr(http_api, "_last_preflight", None)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: api("GET", "preflight"), range(4)))
    assert [r.status_code for r in responses] == [200] * 4, responses[0].text
    reports = [r.json() for r in responses]
    assert reports[0]["status"] in (OK, WARNING) and {c["name"] for c in reports[0]["checks"]} >= {
        "identity",
        "permissions",
    }
    assert len({r["checkedAt"] for r in reports}) == 1  # one run served four callers
    monkeypatch.setattr(http_api, "PREFLIGHT_REUSE_SECONDS", 0)
    assert api("GET", "preflight").json()["checkedAt"] != reports[0]["checkedAt"]


def test_who_may_call_the_api_is_reported_and_an_unreachable_authority_fails(preflight, entra):
    """With Entra ID on, every call needs the tenant's signing keys: the preflight fetches them."""
    assert "api://" in only(preflight(), "api_auth")["found"]
    from mccf_backup import entra_tokens

    entra_tokens._signing_keys.clear()
    entra.faults.down("login")
    check = only(preflight(), "api_auth")
    assert check["status"] == FAILED and "AUTH_AUTHORITY_HOST" in check["fix"]


def test_every_check_name_the_code_emits_is_in_the_api_document():
    import re
    from pathlib import Path

    from .contract import DOCUMENT

    source = "".join(p.read_text() for p in Path(__file__).resolve().parents[2].glob("mccf_backup/*preflight*.py"))
    emitted = set(re.findall(r'Check\(\s*"([a-z_]+)"', source)) | set(re.findall(r'guarded\(\s*"([a-z_]+)"', source))
    documented = set(DOCUMENT["components"]["schemas"]["PreflightCheck"]["properties"]["name"]["enum"])
    assert emitted and emitted == documented


def test_a_canary_that_cannot_start_is_a_failed_check_beside_the_reason(preflight, app_env, emulator):
    from .test_cli import run

    emulator.deny(emulator.system_identity.client_id, {BACKUP})
    app = app_env["MCCF_TARGETS"].split(",")[0].rsplit("/", 1)[1]
    code, out, err = run("preflight", "--canary", app)
    assert code == 1 and "Traceback" not in out + err
    assert "[ FAIL ] canary" in out and "[ FAIL ] permissions" in out


def test_a_sas_that_cannot_delete_warns_that_retention_will_fail(preflight, emulator):
    with secret_holding(emulator, file_service_sas_url(emulator, "rwlc", minutes=60 * 24 * 60)):
        checks = preflight()
    key_vault = only(checks, "key_vault")
    assert key_vault["status"] == WARNING and "retention cannot delete a share" in key_vault["found"]
    assert "--file /dev/stdin" in key_vault["fix"]
    storage = only(checks, "storage")  # the probe could not be deleted either: said, with its name
    assert storage["status"] == WARNING and "left behind" in storage["found"]


def test_a_storage_account_id_naming_another_account_is_not_read(preflight, emulator, monkeypatch):
    other = emulator.env["BACKUP_STORAGE_ACCOUNT_ID"].rsplit("/", 1)[0] + "/someotheraccount"
    monkeypatch.setenv("BACKUP_STORAGE_ACCOUNT_ID", other)
    check = only(preflight(), "soft_delete")
    assert check["status"] == WARNING and "someotheraccount" in check["found"]


def test_a_schedule_that_never_fires_fails(preflight, monkeypatch):
    monkeypatch.setenv("PRUNE_SCHEDULE", "0 0 2 31 2 *")
    failed = [c for c in preflight()["schedule"] if c["status"] == FAILED]
    assert [c["details"]["setting"] for c in failed] == ["PRUNE_SCHEDULE"] and "never fires" in failed[0]["found"]


def test_a_preflight_reads_the_storage_secret_once(preflight, emulator, service, app_env):
    """The secret is read fresh to be judged, and the recovery-point checks use that same read."""
    service.backup(app_env["MCCF_TARGETS"].split(",")[0], "cli")  # a catalog to read
    before = emulator.faults.count("keyvault", "GET", "/secrets/")
    checks = preflight()
    assert only(checks, "key_vault")["status"] == OK and checks["recovery_point"]
    assert emulator.faults.count("keyvault", "GET", "/secrets/") - before == 1
