"""Inspecting a backup: what it reports equals what the ccf package's reader yields when the test walks
the same real ledger files itself, and it reads chunk by chunk."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import ccf.ledger

from mccf_backup.service import BackupService

from .test_verify_flow import run_cli, use_fixture

FIXTURE = Path(__file__).resolve().parents[2] / "emulator" / "fixtures" / "ccf-ledger" / "expired_service"
GOVERNANCE_TABLES = {
    "public:ccf.gov.proposals_info": "proposal",
    "public:ccf.gov.members.certs": "member",
    "public:ccf.gov.users.certs": "user",
    "public:ccf.gov.nodes.info": "node",
    "public:ccf.gov.service.info": "service",
}


def walk(paths: list[Path]) -> dict:
    """The ledger as the ccf package reads it, walked here independently of the app."""
    writes, governance, txids, signatures, private = Counter(), [], [], 0, 0
    for path in paths:
        for transaction in ccf.ledger.LedgerChunk(str(path)):
            txids.append(transaction.get_txid())
            private += transaction.get_private_domain_size() > 0
            for table, changes in transaction.get_public_domain().get_tables().items():
                writes[table] += len(changes)
                signatures += table == "public:ccf.internal.signatures"
                if table in GOVERNANCE_TABLES:
                    governance += [(transaction.get_txid(), GOVERNANCE_TABLES[table])] * len(changes)
    return {
        "writes": dict(writes),
        "governance": governance,
        "txids": txids,
        "signatures": signatures,
        "private": private,
    }


def test_inspect_reports_what_the_ccf_reader_yields(app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    app = target.rsplit("/", 1)[1]
    use_fixture(emulator, target, fixture="expired_service", chunks=3)
    share = BackupService.from_environment().backup(target, "cli").share
    code, out, err = run_cli("inspect", share, "--target", app, "--json")
    assert code == 0, out + err
    found = json.loads(out)
    chunks = sorted(FIXTURE.glob("ledger_*.committed"), key=lambda p: int(p.name.split("_")[1].split("-")[0]))
    expected = walk(chunks)
    ledger = found["ledger"]
    assert [c["name"] for c in found["chunks"]] == [p.name for p in chunks]
    assert [(c["firstSeqno"], c["lastSeqno"]) for c in found["chunks"]] == [(1, 4), (5, 15), (16, 26)]
    assert found["bytesRead"] == sum(p.stat().st_size for p in chunks)
    assert ledger["transactions"] == len(expected["txids"]) and ledger["lastTxid"] == expected["txids"][-1]
    assert (ledger["firstSeqno"], ledger["lastSeqno"]) == (1, 26)
    assert ledger["publicWrites"] == expected["writes"] and ledger["signatures"] == expected["signatures"]
    assert [(e["txid"], e["kind"]) for e in ledger["governance"]] == expected["governance"]
    assert ledger["governance"][0]["kind"] in ("member", "node", "service")
    assert any(e["kind"] == "proposal" and e["change"] == "Open" for e in ledger["governance"])
    assert ledger["privateTransactions"] == expected["private"] > 0 and ledger["error"] is None  # counted, not read
    code, text, _ = run_cli("inspect", share, "--target", app)
    assert "governance history:" in text and "public:ccf.gov.members.certs" in text and "seqno 1-26" in text


def test_inspect_refuses_what_is_not_a_backup_of_the_target(app_env):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    code, _, err = run_cli("inspect", "other-app-20260101000000", "--target", target)
    assert code == 1 and "share_of_other_target" in err
    code, _, err = run_cli("inspect", "Bad_Name", "--target", target)
    assert code == 2 and "invalid_share_name" in err


def test_the_api_describes_a_backup_without_reading_its_ledger(api, app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    use_fixture(emulator, target, fixture="expired_service", chunks=2)
    share = BackupService.from_environment().backup(target, "cli").share
    reads_before = emulator.faults.count("file", "GET", r"/ledger/ledger_")
    described = api("GET", f"backups/{share}", params={"target": target})
    assert described.status_code == 200, described.text
    body = described.json()
    assert [(c["firstSeqno"], c["lastSeqno"]) for c in body["chunks"]] == [(1, 4), (5, 15)]
    assert {f["path"] for f in body["files"]} >= {"ledger/ledger_1-4.committed", "ledger/ledger_5-15.committed"}
    assert body["catalog"]["share"] == share and body["problems"] == []
    assert emulator.faults.count("file", "GET", r"/ledger/ledger_") == reads_before  # no file was downloaded


def test_the_api_reads_a_small_ledger_through_and_refuses_a_large_one(api, app_env, emulator, monkeypatch):
    import mccf_backup.service

    target = app_env["MCCF_TARGETS"].split(",")[0]
    use_fixture(emulator, target, fixture="expired_service", chunks=3)
    share = BackupService.from_environment().backup(target, "cli").share
    read = api("GET", f"backups/{share}", params={"target": target, "ledger": "true"})
    assert read.status_code == 200, read.text
    assert read.json()["ledger"]["lastSeqno"] == 26 and read.json()["ledger"]["governance"]
    assert api("GET", f"backups/{share}", params={"target": target, "ledger": "yes"}).status_code == 400
    monkeypatch.setattr(mccf_backup.service, "INLINE_MAX_BYTES", 1000)  # as if the ledger were large
    refused = api("GET", f"backups/{share}", params={"target": target, "ledger": "true"})
    assert refused.status_code == 413 and refused.json()["code"] == "ledger_too_large_to_read_inline"
    assert "mccf-backup inspect" in refused.json()["detail"]
