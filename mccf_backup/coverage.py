"""What a backup covers, and which backup to restore to undo a transaction: the first reason
Microsoft gives for backing up a Managed CCF ("recreate the resource sans the erroneous transactions").

A CCF backup holds the ledger from seqno 1 to its last committed chunk. Verification records that
range, the last signed transaction, the counts and the service identity in the share's metadata
(so the catalog shows them without reading a file). To undo transaction ``view.seqno``, restore the
newest backup whose ledger ends before ``seqno``: everything after it is given up, which the choice
reports, with the reason each newer backup was passed over. Only verified backups qualify: an
unverified backup's range is not known, and a restore is the wrong time to find it broken.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from . import catalog as cat
from .catalog import Backup, Coverage
from .errors import InvalidRequest

MAX_PASSED_OVER_SHOWN = 20  # the newest; a dry run (and its approval mail) stays readable
TXID = re.compile(r"([0-9]{1,19})\.([0-9]{1,19})")  # CCF's view.seqno
TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


@dataclass(frozen=True)
class TxId:
    view: int
    seqno: int

    @classmethod
    def parse(cls, value: object) -> "TxId":
        match = TXID.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise InvalidRequest("A transaction id is CCF's 'view.seqno', such as '4.1234'.", field="txid")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.view}.{self.seqno}"


def parse_time(value: object) -> dt.datetime:
    """An RFC 3339 time ('2026-11-20T10:00:00Z'); seconds may be left out ('2026-11-20T10:00Z')."""
    match = TIME.fullmatch(value) if isinstance(value, str) else None
    try:
        if match is None:
            raise ValueError
        date, hours, minutes, seconds, fraction, offset = match.groups()
        offset = "+00:00" if offset in ("Z", "z") else offset
        text = f"{date}T{hours}:{minutes}:{seconds or '00'}{(fraction or '')[:7]}{offset}"
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest("A time is RFC 3339, such as '2026-11-20T10:00:00Z'.", field="time") from None


@dataclass(frozen=True)
class Before:
    """A point to restore before: a transaction, or a time."""

    txid: TxId | None = None
    time: dt.datetime | None = None

    @classmethod
    def parse(cls, txid: object = None, time: object = None) -> "Before":
        if (txid is None) == (time is None):
            raise InvalidRequest("Give exactly one of a transaction id ('txid') or a time ('time').", field="before")
        return cls(TxId.parse(txid)) if txid is not None else cls(time=parse_time(time))

    @classmethod
    def from_request(cls, value: object) -> "Before":
        """The API's ``"before": {"txid": "4.1234"}`` or ``{"time": "2026-11-20T10:00Z"}``."""
        if not isinstance(value, dict) or not set(value) <= {"txid", "time"}:
            raise InvalidRequest('\'before\' is {"txid": "<view.seqno>"} or {"time": "<RFC 3339>"}.', field="before")
        return cls.parse(value.get("txid"), value.get("time"))

    def __str__(self) -> str:
        return f"transaction {self.txid}" if self.txid else f"{self.time.isoformat()}"  # type: ignore[union-attr]


@dataclass
class Choice:
    backup: Backup | None
    passed_over: list[dict] = field(default_factory=list)  # newer backups, each with why it was not chosen
    given_up: int | None = None  # seqnos after the chosen backup that a newer verified backup holds (at least)

    def to_dict(self) -> dict:
        shown = self.passed_over[:MAX_PASSED_OVER_SHOWN]
        return {
            "share": self.backup.share if self.backup else None,
            "transactionsGivenUp": self.given_up,
            "passedOver": shown,
            "passedOverNotShown": len(self.passed_over) - len(shown),
        }


def choose_before(backups: list[Backup], before: Before, now: dt.datetime) -> Choice:
    """The newest restorable, verified backup that ends before ``before``; ``backups`` newest first."""
    choice = Choice(None)
    newest_last = max((c.last_seqno for c in map(Coverage.of, backups) if c.known), default=None)
    for backup in backups:
        coverage = Coverage.of(backup)
        reason = _passed_over(backup, coverage, before, now)
        if reason is None:
            choice.backup = backup
            if newest_last is not None and coverage.last_seqno is not None:
                choice.given_up = max(0, newest_last - coverage.last_seqno)
            return choice
        choice.passed_over.append({"share": backup.share, "reason": reason})
    return choice  # no backup: the caller refuses, with every reason above


def _passed_over(backup: Backup, coverage: Coverage, before: Before, now: dt.datetime) -> str | None:
    if not backup.good:
        return "failed (its job or its verification)"
    if not backup.restorable(now):
        return "older than 90 days: Managed CCF no longer restores it"
    if not coverage.known:
        return "not verified yet: its ledger range is not known"
    if before.txid is not None and coverage.last_seqno >= before.txid.seqno:  # type: ignore[operator]
        return f"contains seqno {before.txid.seqno} (its ledger ends at {coverage.last_seqno})"
    if before.txid is not None and (_view(coverage) or 0) > before.txid.view:
        # Views only grow along one history: a backup signed in a later view that ends before the seqno
        # holds another history (after a restore or a recovery), not a prefix of this one.
        return f"signed in view {_view(coverage)}, after view {before.txid.view}: another history of the ledger"
    if before.time is not None and backup.created >= before.time:
        return f"taken at {backup.created.isoformat()}, not before {before.time.isoformat()}"
    return None


def _view(coverage: Coverage) -> int | None:
    match = TXID.fullmatch(coverage.last_signed_txid or "")
    return int(match.group(1)) if match else None


def containing(backups: list[Backup], txid: TxId) -> list[Backup]:
    """The verified backups whose ledger holds transaction ``txid`` (newest first, as given): its seqno in
    range, and signed in its view or a later one (a ledger whose last signature is in an earlier view
    cannot hold a transaction of a later view)."""
    return [
        b for b in backups if (coverage := Coverage.of(b)).contains(txid.seqno) and (_view(coverage) or 0) >= txid.view
    ]


def verdict_metadata(report) -> dict[str, str]:
    """What a verification records on the share (``report``: a VerificationReport)."""
    metadata = {}
    for key, value in (
        (cat.META_FIRST_SEQNO, report.first_seqno),
        (cat.META_LAST_SEQNO, report.last_seqno),
        (cat.META_LAST_TXID, report.last_verified_txid),
        (cat.META_TRANSACTIONS, report.transactions),
        (cat.META_SIGNATURES, report.signatures),
        (cat.META_SERVICE_IDENTITY, report.service_identity),
    ):
        if value is not None:
            metadata[key] = str(value)
    return metadata
