"""Choosing the backup to restore before a transaction, on catalogs built here (pure functions)."""

from __future__ import annotations

import datetime as dt

import pytest

from mccf_backup import catalog as cat
from mccf_backup.catalog import Backup
from mccf_backup.coverage import Before, TxId, choose_before, containing
from mccf_backup.errors import InvalidRequest
from mccf_backup.inspect_worker import governance_event
from mccf_backup.restore_checks import RestoreRequest

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)


def backup(name: str, days_ago: float, last: int | None, view: int = 2, verified: str | None = "true") -> Backup:
    metadata = {cat.META_OUTCOME: "succeeded"}
    if verified:
        metadata[cat.META_VERIFIED] = verified
    if last is not None:
        metadata.update(
            {cat.META_FIRST_SEQNO: "1", cat.META_LAST_SEQNO: str(last), cat.META_LAST_TXID: f"{view}.{last}"}
        )
    return Backup(name, "app", NOW - dt.timedelta(days=days_ago), metadata)


def test_the_newest_backup_ending_before_the_seqno_is_chosen_and_the_rest_explained():
    backups = [backup("c", 1, 300), backup("b", 2, 200), backup("a", 3, 100)]
    choice = choose_before(backups, Before(TxId(2, 200)), NOW)
    assert choice.backup.share == "a" and choice.given_up == 200
    assert [p["share"] for p in choice.passed_over] == ["c", "b"]
    assert choose_before(backups, Before(TxId(2, 201)), NOW).backup.share == "b"  # ends at 200 < 201
    assert choose_before(backups, Before(TxId(2, 100)), NOW).backup is None


def test_unverified_failed_and_too_old_backups_are_passed_over_with_their_reason():
    backups = [
        backup("unverified", 1, None, verified=None),
        backup("failed", 2, 50, verified="false"),
        backup("old", 95, 10),
    ]
    reasons = {p["share"]: p["reason"] for p in choose_before(backups, Before(TxId(2, 500)), NOW).passed_over}
    assert "not verified" in reasons["unverified"] and "failed" in reasons["failed"] and "90 days" in reasons["old"]


def test_a_backup_of_another_history_is_never_chosen_or_found():
    """After a restore-before, the new history continues in a later view with overlapping seqnos."""
    new_history = backup("new", 1, 1100, view=9)  # restored from old-a, then went on in view 9
    old_history = [backup("old-c", 5, 1400, view=4), backup("old-b", 6, 1200, view=4), backup("old-a", 7, 900, view=4)]
    choice = choose_before([new_history, *old_history], Before(TxId(4, 1234)), NOW)
    assert choice.backup.share == "old-b"
    assert "another history" in choice.passed_over[0]["reason"] and choice.passed_over[0]["share"] == "new"
    assert [b.share for b in containing([new_history, *old_history], TxId(4, 1300))] == ["old-c"]
    assert [b.share for b in containing([new_history, *old_history], TxId(9, 1050))] == ["new"]


@pytest.mark.parametrize("txid", ["4", "4.", ".4", "4.1.2", " 4.1", "4.1\n", "\uff14.1", "-1.4", "1e3.4"])
def test_a_transaction_id_is_view_dot_seqno(txid):
    with pytest.raises(InvalidRequest):
        TxId.parse(txid)


@pytest.mark.parametrize(
    "value", [b"null", b"[1]", b'"x"', b"5", b"[" * 5000, b"\xff", b'{"state": ' + b"9" * 5000 + b"}"]
)
def test_an_odd_governance_value_is_reported_never_raised(value):
    event = governance_event("2.14", "public:ccf.gov.proposals_info", b"p" * 500, value)
    assert event["kind"] == "proposal" and len(event["id"]) <= 128 and len(event["change"]) <= 128


def test_a_restore_fingerprint_has_the_new_fields_only_when_set():
    """An Idempotency-Key recorded before 'before' and 'label' existed still matches its body."""
    assert set(RestoreRequest("contoso").fingerprint("/x")) == {"target", "share", "region", "replace", "confirm"}
    assert RestoreRequest("contoso", label="gold").fingerprint("/x")["label"] == "gold"
