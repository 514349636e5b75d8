"""Metrics and health signals as structured log events with fixed names and dimensions.

Each event is one log line ``MCCFBACKUP_EVENT {"event": "<name>", ...}`` (also passed as
``custom_dimensions``), so an Azure Monitor log alert or workbook can count and chart them with
KQL without a metrics SDK. docs/operations.md lists every name and dimension; tests pin them.
"""

from __future__ import annotations

import json
import logging

from . import logs

log = logs.logger("mccf_backup.events")
PREFIX = "MCCFBACKUP_EVENT"

BACKUP_ATTEMPT = "backup.attempt"
BACKUP_SUCCESS = "backup.success"
BACKUP_FAILURE = "backup.failure"
RESTORE_ATTEMPT = "restore.attempt"
RESTORE_SUCCESS = "restore.success"
RESTORE_FAILURE = "restore.failure"
VERIFY_SUCCESS = "verify.success"
VERIFY_FAILURE = "verify.failure"
PRUNE_DELETED = "prune.deleted"
PRUNE_CAPPED = "prune.capped"
HEALTH_RPO_BREACH = "health.rpo_breach"
HEALTH_RESTORE_WINDOW_CLOSING = "health.restore_window_closing"
HEALTH_PIN_RESTORE_WINDOW_CLOSING = "health.pin_restore_window_closing"
HEALTH_GOLDEN_COPY = "health.golden_copy"  # every pinned backup, each health run: the workbook lists them
ALL = (
    BACKUP_ATTEMPT,
    BACKUP_SUCCESS,
    BACKUP_FAILURE,
    RESTORE_ATTEMPT,
    RESTORE_SUCCESS,
    RESTORE_FAILURE,
    VERIFY_SUCCESS,
    VERIFY_FAILURE,
    PRUNE_DELETED,
    PRUNE_CAPPED,
    HEALTH_RPO_BREACH,
    HEALTH_RESTORE_WINDOW_CLOSING,
    HEALTH_PIN_RESTORE_WINDOW_CLOSING,
    HEALTH_GOLDEN_COPY,
)

_OPERATION = ("target", "trigger", "job")
# Each event's dimensions: what an alert rule or the workbook may read (tests check their queries).
DIMENSIONS: dict[str, frozenset[str]] = {
    BACKUP_ATTEMPT: frozenset(_OPERATION),
    RESTORE_ATTEMPT: frozenset(_OPERATION),
    BACKUP_SUCCESS: frozenset((*_OPERATION, "share", "durationSeconds", "lastSuccess")),
    RESTORE_SUCCESS: frozenset((*_OPERATION, "share", "durationSeconds", "lastSuccess")),
    BACKUP_FAILURE: frozenset((*_OPERATION, "durationSeconds", "code")),
    RESTORE_FAILURE: frozenset((*_OPERATION, "durationSeconds", "code")),
    VERIFY_SUCCESS: frozenset(("target", "share", "job", "lastSeqno", "signatures", "bytes")),
    VERIFY_FAILURE: frozenset(("target", "share", "job", "reason")),
    PRUNE_DELETED: frozenset(("target", "share", "reason", "job")),
    PRUNE_CAPPED: frozenset(("target", "wouldDelete")),
    HEALTH_RPO_BREACH: frozenset(("target", "newestBackup", "newestBackupAgeHours", "rpoHours")),
    HEALTH_RESTORE_WINDOW_CLOSING: frozenset(("target", "share", "daysLeft")),
    HEALTH_PIN_RESTORE_WINDOW_CLOSING: frozenset(("target", "share", "label", "daysLeft", "restorable")),
    HEALTH_GOLDEN_COPY: frozenset(("target", "share", "label", "daysLeft", "restorable")),
}


def emit(name: str, level: int = logging.INFO, **dimensions: object) -> None:
    if name not in ALL:
        raise ValueError(f"unknown event {name!r}")
    if not dimensions.keys() <= DIMENSIONS[name]:  # a new field is declared above first, for the queries
        raise ValueError(f"event {name!r} has no dimension {sorted(dimensions.keys() - DIMENSIONS[name])}")
    payload = {"event": name, **{k: v for k, v in dimensions.items() if v is not None}}
    log.log(
        level, "%s %s", PREFIX, json.dumps(payload, default=str, sort_keys=True), extra={"custom_dimensions": payload}
    )
