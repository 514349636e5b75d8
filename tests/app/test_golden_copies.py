"""The two reasons Microsoft gives for backing up a Managed CCF, end to end on real CCF ledgers:
restore to before a bad transaction, and keep a golden copy that retention never deletes."""

from __future__ import annotations

import json
import logging

import pytest

from azure.mgmt.confidentialledger.models import ManagedCCFBackup

from mccf_backup.service import BackupService

from ..emulator.helpers import file_service_sas_url, mgmt_client

from .test_http_api import assert_problem
from .test_verify_flow import share_client, use_fixture


@pytest.fixture
def growing(app_env, emulator):
    """Three verified backups of one target, of one ledger that grows between them."""
    target = app_env["MCCF_TARGETS"].split(",")[0]
    use_fixture(emulator, target, fixture="expired_service", chunks=1)  # 1-4, then 5-15, then 16-26
    service = BackupService.from_environment()
    shares = [service.backup(target, "cli").share for _ in range(3)]
    for share in shares:
        job, report = service.verify(target, share)
        assert report.valid, report.reasons
    backups = {b.share: b.to_dict() for b in service.list_backups(target)[1]}
    ledgers = [backups[share]["ledger"] for share in shares]
    assert ledgers[0]["lastSeqno"] < ledgers[1]["lastSeqno"] < ledgers[2]["lastSeqno"]  # it grew
    assert all(ledger["firstSeqno"] == 1 and ledger["lastSignedTxid"] for ledger in ledgers)
    return target, shares, ledgers


def test_restore_before_a_transaction_picks_the_newest_backup_that_ends_before_it(api, growing):
    target, (first, second, third), ledgers = growing
    bad = ledgers[1]["lastSeqno"]  # a transaction the second and third backups hold, the first does not
    answer = api("POST", "restores", json={"target": target, "before": {"txid": f"2.{bad}"}, "dryRun": True})
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert plan["share"] == first and plan["before"]["share"] == first
    assert plan["before"]["transactionsGivenUp"] == ledgers[2]["lastSeqno"] - ledgers[0]["lastSeqno"]
    assert [item["share"] for item in plan["before"]["passedOver"]] == [third, second]
    assert all(f"contains seqno {bad}" in item["reason"] for item in plan["before"]["passedOver"])
    found = api("GET", "backups", params={"target": target, "containsTxid": f"2.{bad}"}).json()["backups"]
    assert [b["share"] for b in found] == [third, second]


def test_restore_before_a_time_and_a_transaction_no_backup_precedes(api, growing):
    target, (first, second, third), _ = growing
    created = {b["share"]: b["created"] for b in api("GET", "backups", params={"target": target}).json()["backups"]}
    plan = api("POST", "restores", json={"target": target, "before": {"time": created[third]}, "dryRun": True})
    assert plan.status_code == 200 and plan.json()["share"] == second
    refused = api("POST", "restores", json={"target": target, "before": {"txid": "2.1"}, "dryRun": True}).json()
    assert refused["ok"] is False and refused["share"] is None
    assert [c["code"] for c in refused["checks"] if not c["ok"]][0] == "no_restorable_backup"
    assert len(refused["before"]["passedOver"]) == 3
    body = {"target": target, "before": {"txid": "2.1"}}
    assert_problem(api("POST", "restores", json=body), 404, "no_restorable_backup")
    for before in ({"txid": "4"}, {"time": "yesterday"}, {"txid": "2.5", "time": created[first]}, {}):
        assert_problem(api("POST", "restores", json={"target": target, "before": before}), 400, "invalid_request")


def test_an_unverified_backup_is_passed_over_with_the_reason(api, app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    share = BackupService.from_environment().backup(target, "cli").share
    plan = api("POST", "restores", json={"target": target, "before": {"txid": "9.99999"}, "dryRun": True}).json()
    assert plan["before"]["passedOver"] == [
        {"share": share, "reason": "not verified yet: its ledger range is not known"}
    ]


def test_a_golden_copy_survives_retention_restores_by_label_and_warns_before_90_days(
    api, app_env, emulator, monkeypatch, caplog
):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    rg, app = target.split("/")[4], target.rsplit("/", 1)[1]
    emulator.clock.advance(days=-80)  # the service stamps the share 80 days ago
    try:
        mgmt_client(emulator).managed_ccf.begin_backup(
            rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator))
        ).result()
    finally:
        emulator.clock.reset()
    service = BackupService.from_environment()
    newer = service.backup(target, "cli").share  # and adopts the older share, which no job claimed
    (golden,) = [b.share for b in service.list_backups(target)[1] if b.share != newer]
    pinned = api("POST", f"backups/{golden}/pin", json={"target": target, "label": "reference-data", "note": "v1"})
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["pin"]["label"] == "reference-data" and pinned.json()["pin"]["note"] == "v1"
    metadata = share_client(emulator, golden).get_share_properties().metadata  # survives a lost job table
    assert metadata["mccfbackup_pin_label"] == "reference-data"
    taken = api("POST", f"backups/{newer}/pin", json={"target": target, "label": "reference-data"})
    assert_problem(taken, 409, "pin_label_in_use")
    assert_problem(api("POST", f"backups/{newer}/pin", json={"target": target, "label": "a b"}), 400, "invalid_request")

    for name, value in {"RETENTION_KEEP_LAST": "0", "RETENTION_DAILY": "0", "RETENTION_WEEKLY": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RETENTION_MONTHLY", "0")
    monkeypatch.setenv("RETENTION_MIN_AGE_HOURS", "0")
    monkeypatch.setenv("RETENTION_MAX_DELETE_FRACTION", "1")
    (plan,) = BackupService.from_environment().prune(target, apply=True)
    decision = next(d for d in plan.plan.decisions if d.share == golden)
    assert not decision.delete and "pinned as 'reference-data' (a golden copy)" in decision.reasons

    dry = api("POST", "restores", json={"target": target, "label": "reference-data", "dryRun": True}).json()
    assert dry["share"] == golden

    caplog.set_level(logging.INFO, logger="mccf_backup.events")
    findings = BackupService.from_environment().health()
    closing = [f for f in findings if f["event"] == "health.pin_restore_window_closing"]
    assert closing == [
        {
            "event": "health.pin_restore_window_closing",
            "target": target,
            "share": golden,
            "label": "reference-data",
            "daysLeft": closing[0]["daysLeft"],
            "restorable": True,
        }
    ]
    assert 9 <= closing[0]["daysLeft"] <= 10  # 80 days and the minutes the test took
    assert "health.pin_restore_window_closing" in caplog.text
    # Every golden copy, closing or not, is listed each run for the workbook: one event per pin.
    listed = [
        json.loads(r.getMessage().split(" ", 1)[1]) for r in caplog.records if "health.golden_copy" in r.getMessage()
    ]
    assert [(e["share"], e["label"], e["restorable"]) for e in listed] == [(golden, "reference-data", True)]

    unpinned = api("POST", f"backups/{golden}/unpin", json={"target": target})
    assert unpinned.status_code == 200 and unpinned.json()["pin"] is None
    assert "mccfbackup_pin_label" not in share_client(emulator, golden).get_share_properties().metadata
    kinds = [(j.kind, j.share) for j in BackupService.from_environment().list_jobs(target)]
    assert ("pin", golden) in kinds and ("unpin", golden) in kinds


def test_unpinning_needs_the_restore_role_pinning_the_backup_role(api, app_env, entra):
    from .entra import bearer

    target = app_env["MCCF_TARGETS"].split(",")[0]
    share = BackupService.from_environment().backup(target, "cli").share
    operator = bearer(entra.api_token("Backup.Operator"))
    body = {"target": target, "label": "keep"}
    assert api("POST", f"backups/{share}/pin", json=body, headers=operator).status_code == 200
    refused = api("POST", f"backups/{share}/unpin", json={"target": target}, headers=operator)
    assert_problem(refused, 403, "role_missing")
    restorer = bearer(entra.api_token("Restore.Operator"))
    assert api("POST", f"backups/{share}/unpin", json={"target": target}, headers=restorer).status_code == 200


def test_the_cli_finds_restores_before_and_pins(growing):
    from .test_verify_flow import run_cli

    target, (first, second, third), ledgers = growing
    app = target.rsplit("/", 1)[1]
    bad = f"2.{ledgers[1]['lastSeqno']}"
    code, out, _ = run_cli("find", "--target", app, "--txid", bad)
    assert code == 0 and third in out and second in out and first not in out
    assert f"1-{ledgers[2]['lastSeqno']}" in out  # the LEDGER (SEQNO) column
    code, out, _ = run_cli("restore", "--target", app, "--before-txid", bad, "--dry-run")
    assert f"from {first}" in out and f"passed over {third}: contains seqno" in out
    code, out, _ = run_cli("pin", first, "--target", app, "--label", "before-incident", "--note", "INC-42")
    assert code == 0 and "pinned as 'before-incident'" in out
    code, out, err = run_cli("restore", "--target", app, "--label", "before-incident", "--share", first, "--dry-run")
    assert code == 2 and "invalid_request" in err  # one way to name the backup
    code, out, _ = run_cli("unpin", first, "--target", app)
    assert code == 0 and "not pinned" in out


def test_a_pin_whose_write_is_slow_still_holds_its_label_against_a_second(app_env, monkeypatch):
    """The interleaving that once pinned two backups under one label: the second operator looks while
    the first has decided but not yet written its metadata."""
    import threading

    from mccf_backup.catalog import Catalog
    from mccf_backup.errors import PinLabelInUse

    target = app_env["MCCF_TARGETS"].split(",")[0]
    service = BackupService.from_environment()
    first, second = (service.backup(target, "cli").share for _ in range(2))
    real_tag, claimed, go_on = Catalog.tag, threading.Event(), threading.Event()

    def slow_tag(self, share, metadata, current=None):
        if share == first:
            claimed.set()
            go_on.wait(30)
        return real_tag(self, share, metadata, current)

    monkeypatch.setattr(Catalog, "tag", slow_tag)
    pinning = threading.Thread(
        target=lambda: BackupService.from_environment().pins.pin(target, first, "gold", None, "cli")
    )
    pinning.start()
    try:
        assert claimed.wait(30)
        with pytest.raises(PinLabelInUse, match=first):
            BackupService.from_environment().pins.pin(target, second, "gold", None, "cli")
    finally:
        go_on.set()
        pinning.join(30)
    holders = [b.share for b in service.list_backups(target)[1] if (b.pin or {}).get("label") == "gold"]
    assert holders == [first]


def test_a_pin_whose_write_outlasts_the_claims_grace_backs_off_for_the_one_that_took_over(app_env, monkeypatch):
    """A writer slower than CLAIM_GRACE (or with a clock behind) loses its claim to a second pin; it sees
    that when it re-reads the claim after writing, takes its metadata back and is refused."""
    import threading

    from mccf_backup import label_claims
    from mccf_backup.catalog import Catalog
    from mccf_backup.errors import PinLabelInUse

    target = app_env["MCCF_TARGETS"].split(",")[0]
    service = BackupService.from_environment()
    slow, fast = (service.backup(target, "cli").share for _ in range(2))
    monkeypatch.setattr(label_claims, "CLAIM_GRACE", label_claims.dt.timedelta(0))
    real_tag, claimed, go_on, outcome = Catalog.tag, threading.Event(), threading.Event(), {}

    def stalled_tag(self, share, metadata, current=None):
        if share == slow and "mccfbackup_pin_label" in metadata:
            claimed.set()
            go_on.wait(30)
        return real_tag(self, share, metadata, current)

    def pin_slow():
        try:
            BackupService.from_environment().pins.pin(target, slow, "gold", None, "cli")
            outcome["slow"] = "pinned"
        except PinLabelInUse as exc:
            outcome["slow"] = exc.message

    monkeypatch.setattr(Catalog, "tag", stalled_tag)
    pinning = threading.Thread(target=pin_slow)
    pinning.start()
    try:
        assert claimed.wait(30)
        BackupService.from_environment().pins.pin(target, fast, "gold", None, "cli")  # takes the stale claim
    finally:
        go_on.set()
        pinning.join(30)
    assert fast in outcome["slow"]
    holders = [b.share for b in service.list_backups(target)[1] if (b.pin or {}).get("label") == "gold"]
    assert holders == [fast]


def test_a_label_whose_holder_was_unpinned_or_whose_pin_died_is_free_again(app_env, monkeypatch):
    from mccf_backup import label_claims

    target = app_env["MCCF_TARGETS"].split(",")[0]
    service = BackupService.from_environment()
    first, second, third = (service.backup(target, "cli").share for _ in range(3))
    service.pins.pin(target, first, "gold", None, "cli")
    service.pins.unpin(target, first, "cli")
    assert service.pins.pin(target, second, "gold", None, "cli").pin["label"] == "gold"  # unpin released it
    # a pin that claimed the label and died before writing its metadata: free once the grace has passed
    service.pins.unpin(target, second, "cli")
    dead = target.rsplit("/", 1)[1] + "-20200101000000"  # a share of this target that does not exist
    service.pins.claims.claim(target, "gold", dead, lambda share: False)
    monkeypatch.setattr(label_claims, "CLAIM_GRACE", label_claims.dt.timedelta(0))
    assert service.pins.pin(target, third, "gold", None, "cli").pin["label"] == "gold"


def test_two_operators_pinning_two_backups_under_one_label_at_once_leave_one_holder(app_env):
    import threading

    target = app_env["MCCF_TARGETS"].split(",")[0]
    service = BackupService.from_environment()
    shares = [service.backup(target, "cli").share for _ in range(2)]
    outcomes: dict[str, str] = {}
    start = threading.Barrier(2)

    def pin(share: str) -> None:
        start.wait()
        try:
            BackupService.from_environment().pins.pin(target, share, "gold", None, "http", share)
            outcomes[share] = "pinned"
        except Exception as err:  # noqa: BLE001 - the loser's error is what the test reads
            outcomes[share] = getattr(err, "code", repr(err))

    threads = [threading.Thread(target=pin, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    holders = [b.share for b in service.list_backups(target)[1] if (b.pin or {}).get("label") == "gold"]
    assert len(holders) == 1 and outcomes[holders[0]] == "pinned", outcomes
    assert sorted(outcomes.values()) == ["pin_label_in_use", "pinned"]
    other = next(share for share in shares if share not in holders)
    refused = api_free_pin(service, target, holders[0], "another-label")
    assert refused == "pin_label_in_use"  # a pinned share keeps its label until unpinned
    assert api_free_pin(service, target, other, "gold") == "pin_label_in_use"


def api_free_pin(service: BackupService, target: str, share: str, label: str) -> str:
    try:
        service.pins.pin(target, share, label, None, "cli")
    except Exception as err:  # noqa: BLE001
        return getattr(err, "code", repr(err))
    return "pinned"


def test_prune_keeps_a_backup_pinned_after_its_plan_and_one_a_running_restore_reads(app_env, emulator, monkeypatch):
    import mccf_backup.upkeep as upkeep

    target = app_env["MCCF_TARGETS"].split(",")[0]
    rg, app = target.split("/")[4], target.rsplit("/", 1)[1]
    service = BackupService.from_environment()
    first, second, third = (service.backup(target, "cli").share for _ in range(3))
    for name, value in {"RETENTION_KEEP_LAST": "0", "RETENTION_DAILY": "0", "RETENTION_WEEKLY": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RETENTION_MONTHLY", "0")
    monkeypatch.setenv("RETENTION_MIN_AGE_HOURS", "0")
    monkeypatch.setenv("RETENTION_MAX_DELETE_FRACTION", "1")
    mgmt_client(emulator).managed_ccf.begin_delete(rg, app).result()
    emulator.arm.options.operation_seconds = 30  # the restore stays running while prune runs (reset after)
    from mccf_backup.restore_checks import RestoreRequest

    restoring = BackupService.from_environment().start_restore(RestoreRequest(target, share=first, trigger="cli"))
    assert not restoring.done

    planned = upkeep.plan_retention

    def plan_then_an_operator_pins(*args, **kwargs):  # an operator pins between the listing and the deletes
        plan = planned(*args, **kwargs)
        BackupService.from_environment().pins.pin(target, second, "late", None, "http", "ops")
        return plan

    monkeypatch.setattr(upkeep, "plan_retention", plan_then_an_operator_pins)
    (pruned,) = BackupService.from_environment().prune(target, apply=True)
    decisions = {d.share: d for d in pruned.plan.decisions}
    assert not decisions[first].delete and "a running restore reads it" in decisions[first].reasons
    assert [job.share for job in pruned.jobs] == []  # second was pinned meanwhile; third is the newest
    left = {b.share for b in service.list_backups(target)[1]}
    assert {first, second, third} <= left


def test_a_backup_no_job_has_finished_is_not_pinnable(api, app_env, emulator):
    """Found by the stateful fuzz run: the refusal is the backup's state (409), not the request's (400)."""
    target = app_env["MCCF_TARGETS"].split(",")[0]
    rg, app = target.split("/")[4], target.rsplit("/", 1)[1]
    mgmt_client(emulator).managed_ccf.begin_backup(
        rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator))
    ).result()
    (untagged,) = [b.share for b in BackupService.from_environment().list_backups(target)[1]]
    refused = api("POST", f"backups/{untagged}/pin", json={"target": target, "label": "too-early"})
    assert_problem(refused, 409, "backup_not_pinnable")
