"""One run over one Managed CCF and one Azure Confidential Ledger: the same engine backs up, verifies,
inspects, pins, prunes around and restores both (ledgers were parsed and emulated, never exercised)."""

from __future__ import annotations

import uuid

from azure.functions.timer import TimerRequest
from azure.mgmt.confidentialledger.models import ConfidentialLedger, LedgerProperties

from mccf_backup.restore_checks import RestoreRequest
from mccf_backup.service import BackupService
from devhost.devserver import functions_of
from devhost.invocation import invoke

from ..emulator.helpers import mgmt_client
from .test_verify_flow import use_fixture


def test_a_managed_ccf_and_a_confidential_ledger_in_one_run(app_env, emulator, monkeypatch):
    ccf_target = app_env["MCCF_TARGETS"].split(",")[0]
    rg, name = "rg-acl", f"acl-{uuid.uuid4().hex[:8]}"
    client = mgmt_client(emulator)
    client.ledger.begin_create(
        rg, name, ConfidentialLedger(location="eastus", properties=LedgerProperties(ledger_type="Public"))
    ).result()
    sub = emulator.env["AZURE_SUBSCRIPTION_ID"]
    acl_target = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ConfidentialLedger/ledgers/{name}"
    monkeypatch.setenv("MCCF_TARGETS", f"{ccf_target},{acl_target}")
    for target in (ccf_target, acl_target):
        use_fixture(emulator, target, fixture="expired_service", chunks=3)

    from function_app import app

    timer = next(f for f in functions_of(app) if f.get_function_name() == "scheduled_backup")
    invoke(timer, timer=TimerRequest(past_due=False))  # the scheduled run, as the host fires it
    service = BackupService.from_environment()
    jobs = {}
    for target in (ccf_target, acl_target):
        (job,) = [j for j in service.list_jobs(target) if j.kind == "backup"]
        jobs[target] = service.follow(job)
        assert jobs[target].status == "succeeded", jobs[target].error_message
        _, report = service.verify(target, jobs[target].share)
        assert report.valid and report.last_seqno == 26, report.reasons
        found = service.inspect(target, jobs[target].share)
        assert found["ledger"]["lastSeqno"] == 26 and found["ledger"]["governance"]
        service.pins.pin(target, jobs[target].share, "golden", None, "cli", "cli")
        (plan,) = service.prune(target)
        assert not any(d.delete for d in plan.plan.decisions if d.share == jobs[target].share)

    rg_acl = acl_target.split("/")[4]
    client.ledger.begin_delete(rg_acl, name).result()
    restored = service.follow(service.start_restore(RestoreRequest(acl_target, label="golden", trigger="cli")))
    assert restored.status == "succeeded", restored.error_message
    assert restored.share == jobs[acl_target].share
    assert client.ledger.get(rg_acl, name).properties.provisioning_state == "Succeeded"
