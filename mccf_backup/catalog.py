"""The backup catalog: the Azure Files shares the Managed CCF service made, read and tagged.

The service names each backup share ``<app>-<timestamp>``; the app tags it with share metadata
(target, job, trigger, times, outcome) once the operation ends, so that the catalog does not
depend on the name alone and never mistakes another app's share for a backup.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.fileshare import ShareLeaseClient, ShareServiceClient

from . import clock
from .errors import AzureRequestFailed, PermissionDenied, ShareNotFound, ShareOfOtherTarget
from .inputs import share_name
from .redaction import redact
from .targets import Target

RESTORE_LIMIT = dt.timedelta(days=90)
BACKUP_SHARE = re.compile(r"(?P<app>[a-z0-9][a-z0-9-]*?)-(?P<stamp>[0-9]{14})")
# Share metadata names must be C# identifiers: letters, digits and underscores.
META_TARGET = "mccfbackup_target"
META_JOB = "mccfbackup_job"
META_TRIGGER = "mccfbackup_trigger"
META_STARTED = "mccfbackup_started"
META_ENDED = "mccfbackup_ended"
META_OUTCOME = "mccfbackup_outcome"
META_LOCATION = "mccfbackup_location"
META_VERIFIED = "mccfbackup_verified"  # "true" | "false", set by verification
META_VERIFIED_AT = "mccfbackup_verified_at"
META_LAST_SEQNO = "mccfbackup_last_seqno"
META_SERVICE_IDENTITY = "mccfbackup_service_identity"
META_VERIFY_REASON = "mccfbackup_verify_reason"
# What verification found in the ledger (coverage.py): read by the catalog, restore-before and find.
META_FIRST_SEQNO = "mccfbackup_first_seqno"
META_LAST_TXID = "mccfbackup_last_txid"
META_TRANSACTIONS = "mccfbackup_transactions"
META_SIGNATURES = "mccfbackup_signatures"
# A golden copy (pins.py): retention never deletes it.
META_PIN_LABEL = "mccfbackup_pin_label"
META_PIN_NOTE = "mccfbackup_pin_note"
META_PINNED_BY = "mccfbackup_pinned_by"
META_PINNED_AT = "mccfbackup_pinned_at"
PIN_METADATA = (META_PIN_LABEL, META_PIN_NOTE, META_PINNED_BY, META_PINNED_AT)


def metadata_text(text: str, limit: int = 512) -> str:
    """Share metadata values are single-line ASCII: fold whitespace, replace the rest, bound the length."""
    return " ".join(text.split()).encode("ascii", "replace").decode()[:limit]


def _int(metadata: dict[str, str], key: str) -> int | None:
    value = metadata.get(key) or ""
    return int(value) if value.isdigit() else None


@dataclass(frozen=True)
class Coverage:
    """The ledger a backup holds, as its verification recorded it (None where not known)."""

    first_seqno: int | None = None
    last_seqno: int | None = None
    last_signed_txid: str | None = None
    transactions: int | None = None
    signatures: int | None = None
    service_identity: str | None = None

    @classmethod
    def of(cls, backup: "Backup") -> "Coverage":
        metadata = backup.metadata
        if metadata.get(META_VERIFIED) != "true":
            return cls()
        return cls(
            first_seqno=_int(metadata, META_FIRST_SEQNO),
            last_seqno=_int(metadata, META_LAST_SEQNO),
            last_signed_txid=metadata.get(META_LAST_TXID),
            transactions=_int(metadata, META_TRANSACTIONS),
            signatures=_int(metadata, META_SIGNATURES),
            service_identity=metadata.get(META_SERVICE_IDENTITY),
        )

    @property
    def known(self) -> bool:
        return self.last_seqno is not None

    def contains(self, seqno: int) -> bool:
        return self.known and (self.first_seqno or 1) <= seqno <= self.last_seqno  # type: ignore[operator]

    def to_dict(self) -> dict:
        return {
            "firstSeqno": self.first_seqno,
            "lastSeqno": self.last_seqno,
            "lastSignedTxid": self.last_signed_txid,
            "transactions": self.transactions,
            "signatures": self.signatures,
            "serviceIdentity": self.service_identity,
        }


@dataclass(frozen=True)
class Backup:
    share: str
    app: str
    created: dt.datetime
    metadata: dict[str, str] = field(default_factory=dict)

    def age(self, now: dt.datetime | None = None) -> dt.timedelta:
        return (now or clock.utcnow()) - self.created

    def restorable(self, now: dt.datetime | None = None) -> bool:
        return self.age(now) < RESTORE_LIMIT

    def days_left(self, now: dt.datetime | None = None) -> int:
        return max(0, (RESTORE_LIMIT - self.age(now)).days)

    @property
    def outcome(self) -> str | None:
        return self.metadata.get(META_OUTCOME)

    @property
    def good(self) -> bool:
        """A backup the catalog counts on: its job succeeded (or it is untagged) and it did not fail verification."""
        return self.outcome in (None, "succeeded") and self.metadata.get(META_VERIFIED) != "false"

    def tagged_for(self, target: Target) -> bool:
        return (self.metadata.get(META_TARGET) or "").lower() == target.resource_id.lower()

    def to_dict(self, now: dt.datetime | None = None) -> dict:
        return {
            "share": self.share,
            "app": self.app,
            "created": self.created.isoformat(),
            "ageDays": round(self.age(now).total_seconds() / 86400, 2),
            "restorable": self.restorable(now),
            "restorableDaysLeft": self.days_left(now),
            "target": self.metadata.get(META_TARGET),
            "job": self.metadata.get(META_JOB),
            "trigger": self.metadata.get(META_TRIGGER),
            "outcome": self.outcome,
            "verified": {"true": True, "false": False}.get(self.metadata.get(META_VERIFIED, "")),
            "verifyReason": self.metadata.get(META_VERIFY_REASON),
            "ledger": Coverage.of(self).to_dict(),
            "pin": self.pin,
        }

    @property
    def pin(self) -> dict | None:
        """The golden-copy pin on this backup, or None."""
        label = self.metadata.get(META_PIN_LABEL)
        if not label:
            return None
        return {
            "label": label,
            "note": self.metadata.get(META_PIN_NOTE) or None,
            "by": self.metadata.get(META_PINNED_BY) or None,
            "at": self.metadata.get(META_PINNED_AT) or None,
        }


def parse_backup_name(name: str) -> tuple[str, dt.datetime] | None:
    """(app, creation time) from ``<app>-<YYYYMMDDHHMMSS>``, or None when the name is not a backup's."""
    match = BACKUP_SHARE.fullmatch(name)
    if not match:
        return None
    stamp = match.group("stamp")  # YYYYMMDDHHMMSS; sliced rather than strptime'd: catalogs hold thousands
    try:
        created = dt.datetime(
            int(stamp[0:4]),
            int(stamp[4:6]),
            int(stamp[6:8]),
            int(stamp[8:10]),
            int(stamp[10:12]),
            int(stamp[12:14]),
            tzinfo=dt.timezone.utc,
        )
    except ValueError:
        return None
    return match.group("app"), created


class Catalog:
    def __init__(self, service: ShareServiceClient) -> None:
        self._service = service

    def _belongs(self, target: Target, name: str, metadata: dict[str, str]) -> Backup | None:
        parsed = parse_backup_name(name)
        if parsed is None or parsed[0] != target.name.lower():
            return None
        tagged = metadata.get(META_TARGET)
        if tagged and tagged.lower() != target.resource_id.lower():
            return None  # same app name in another resource group or subscription
        return Backup(name, parsed[0], parsed[1], dict(metadata))

    def backups(self, target: Target) -> list[Backup]:
        """This target's backups, newest first."""
        try:
            items = list(self._service.list_shares(name_starts_with=target.share_prefix, include_metadata=True))
        except HttpResponseError as exc:
            raise storage_error(exc, "list backup shares") from exc
        return self.backups_in(target, items)

    def list_all(self) -> list:
        """Every share of the account with its metadata (one paged listing for a whole run)."""
        try:
            return list(self._service.list_shares(include_metadata=True))
        except HttpResponseError as exc:
            raise storage_error(exc, "list backup shares") from exc

    def backups_in(self, target: Target, items: list) -> list[Backup]:
        """This target's backups among listed shares, newest first."""
        found = [self._belongs(target, item.name, item.metadata or {}) for item in items]
        return sorted((b for b in found if b is not None), key=lambda b: b.created, reverse=True)

    def get(self, target: Target, share: str) -> Backup:
        share_name(share)  # the one rule in inputs, before the name reaches Azure Files
        parsed = parse_backup_name(share)
        if parsed is None or parsed[0] != target.name.lower():
            raise ShareOfOtherTarget(
                f"Share '{share}' is not a backup of '{target.name}' (backup shares are named "
                f"'{target.share_prefix}<YYYYMMDDHHMMSS>').",
                target=str(target),
                field="share",
            )
        try:
            properties = self._service.get_share_client(share).get_share_properties()
        except ResourceNotFoundError as exc:
            raise ShareNotFound(f"Backup share '{share}' does not exist.", target=str(target), field="share") from exc
        except HttpResponseError as exc:
            raise storage_error(exc, f"read share '{share}'") from exc
        backup = self._belongs(target, share, properties.metadata or {})
        if backup is None:
            raise ShareOfOtherTarget(
                f"Share '{share}' is tagged as a backup of {properties.metadata.get(META_TARGET)}, not of {target}.",
                target=str(target),
                field="share",
            )
        return backup

    def find_new(self, target: Target, since: dt.datetime, job_id: str) -> Backup | None:
        """The share a backup job created: the newest one from ``since`` on not claimed by another job."""
        for backup in self.backups(target):
            if backup.created < since:
                return None
            if backup.metadata.get(META_JOB) in (None, job_id):
                return backup
        return None

    def protect(self, share: str) -> None:
        """An infinite lease, so the share cannot be deleted by accident (Azure Backup does the same)."""
        try:
            ShareLeaseClient(self._service.get_share_client(share)).acquire(lease_duration=-1)
        except HttpResponseError as exc:
            if exc.error_code != "LeaseAlreadyPresent":
                raise storage_error(exc, f"lease share '{share}'") from exc

    def delete(self, share: str) -> None:
        """Break the protecting lease on purpose, then delete the share."""
        client = self._service.get_share_client(share)
        try:
            if client.get_share_properties().lease.state in ("leased", "breaking"):
                ShareLeaseClient(client).break_lease(lease_break_period=0)
            client.delete_share()
        except ResourceNotFoundError:
            return  # already gone: deleting is idempotent
        except HttpResponseError as exc:
            raise storage_error(exc, f"delete share '{share}'") from exc

    def usage_bytes(self, share: str) -> int:
        try:
            return self._service.get_share_client(share).get_share_stats()
        except HttpResponseError as exc:
            raise storage_error(exc, f"read the size of share '{share}'") from exc

    def untag(self, share: str, names: tuple[str, ...], current: dict[str, str]) -> None:
        """Remove metadata from a share's (``current``: its metadata as just read)."""
        try:
            self._service.get_share_client(share).set_share_metadata(
                {k: v for k, v in current.items() if k not in names}
            )
        except HttpResponseError as exc:
            raise storage_error(exc, f"untag share '{share}'") from exc

    def tag(self, share: str, metadata: dict[str, str], current: dict[str, str] | None = None) -> None:
        """Add metadata to a share's; ``current`` is its metadata as just listed (saves a read)."""
        client = self._service.get_share_client(share)
        try:
            if current is None:
                current = client.get_share_properties().metadata or {}
            client.set_share_metadata({**current, **metadata})
        except HttpResponseError as exc:
            raise storage_error(exc, f"tag share '{share}'") from exc


def storage_error(exc: HttpResponseError, action: str) -> Exception:
    if exc.status_code == 403:
        return PermissionDenied(
            f"The backup storage account refused to {action} ({exc.error_code}). Check the storage secret's key or "
            "SAS permissions."
        )
    return AzureRequestFailed(
        f"The backup storage account answered {exc.status_code} ({exc.error_code}) to {action}: "
        f"{redact((exc.message or '').splitlines()[0] if exc.message else '')}"
    )
