"""Errors with stable codes, the only kind the engine lets out.

Every failure a user can meet has a code (stable: HTTP clients and Logic Apps branch on it), an
HTTP status for the API, and a message that says what to do. Messages never contain a SAS,
account key or token: they are built from names, never from secret values.
"""

from __future__ import annotations


class MccfBackupError(Exception):
    """Base error: ``code`` is stable, ``status`` is the HTTP status the API answers with."""

    code = "internal_error"
    status = 500
    title = "Internal error"

    def __init__(self, message: str, *, target: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.field = field


def _error(name: str, code: str, status: int, title: str) -> type[MccfBackupError]:
    return type(name, (MccfBackupError,), {"code": code, "status": status, "title": title, "__doc__": title})


SettingsInvalid = _error("SettingsInvalid", "settings_invalid", 500, "App settings are invalid")
InvalidRequest = _error("InvalidRequest", "invalid_request", 400, "The request is invalid")
InvalidJson = _error("InvalidJson", "invalid_json", 400, "The request body is not valid JSON")
UnsupportedMediaType = _error("UnsupportedMediaType", "unsupported_media_type", 415, "The body is not JSON")
InvalidShareName = _error("InvalidShareName", "invalid_share_name", 400, "The share name is invalid")
Unauthenticated = _error("Unauthenticated", "unauthenticated", 401, "No signed-in caller")
TokenKeysUnavailable = _error(
    "TokenKeysUnavailable", "token_keys_unavailable", 503, "The tenant's token-signing keys cannot be fetched"
)
RoleMissing = _error("RoleMissing", "role_missing", 403, "The caller lacks an app role")
RestoreDisabled = _error("RestoreDisabled", "restore_disabled", 403, "Restore is switched off")
TargetNotAllowed = _error("TargetNotAllowed", "target_not_allowed", 404, "The target is not configured")
TargetNotFound = _error("TargetNotFound", "target_not_found", 404, "The Managed CCF instance does not exist")
ShareNotFound = _error("ShareNotFound", "share_not_found", 404, "The backup share does not exist")
ShareOfOtherTarget = _error("ShareOfOtherTarget", "share_of_other_target", 400, "The backup belongs to another app")
NoRestorableBackup = _error("NoRestorableBackup", "no_restorable_backup", 404, "No restorable backup exists")
BackupTooOld = _error("BackupTooOld", "backup_too_old", 422, "The backup is older than 90 days")
InstanceExists = _error("InstanceExists", "instance_exists", 409, "The instance still exists")
RestoreRegionRequired = _error("RestoreRegionRequired", "restore_region_required", 400, "No restore region known")
ReplaceNotAllowed = _error("ReplaceNotAllowed", "replace_not_allowed", 403, "Replacing a live instance is switched off")
ReplaceNotConfirmed = _error("ReplaceNotConfirmed", "replace_not_confirmed", 400, "The replace is not confirmed")
ReplaceNeedsNewestBackup = _error(
    "ReplaceNeedsNewestBackup", "replace_needs_newest_backup", 409, "A replace must use the newest good backup"
)
IdempotencyKeyReused = _error(
    "IdempotencyKeyReused", "idempotency_key_reused", 409, "The Idempotency-Key was used with another body"
)
LedgerTooLargeToReadInline = _error(
    "LedgerTooLargeToReadInline", "ledger_too_large_to_read_inline", 413, "The ledger is too large to read in a request"
)
BackupNotPinnable = _error(
    "BackupNotPinnable", "backup_not_pinnable", 409, "Only a finished, good backup can be pinned"
)
PinLabelInUse = _error("PinLabelInUse", "pin_label_in_use", 409, "The label already pins another backup")
OperationInProgress = _error("OperationInProgress", "operation_in_progress", 409, "An operation is already running")
OperationNotFound = _error("OperationNotFound", "operation_not_found", 404, "The operation does not exist")
SecretNotFound = _error("SecretNotFound", "secret_not_found", 500, "The storage secret is missing")
StorageSecretInvalid = _error("StorageSecretInvalid", "storage_secret_invalid", 500, "The storage secret is unusable")
SasUnusable = _error("SasUnusable", "storage_sas_unusable", 500, "The stored SAS cannot do this operation")
PermissionDenied = _error("PermissionDenied", "permission_denied", 502, "The app's identity lacks a permission")
AuthenticationFailed = _error("AuthenticationFailed", "authentication_failed", 502, "No token for the app's identity")
AzureRequestFailed = _error("AzureRequestFailed", "azure_request_failed", 502, "An Azure request failed")
VerificationFailed = _error("VerificationFailed", "verification_failed", 422, "The backup's ledger did not verify")
BackupFailed = _error("BackupFailed", "backup_failed", 502, "The backup operation failed")
RestoreFailed = _error("RestoreFailed", "restore_failed", 502, "The restore operation failed")
OperationOutcomeUnknown = _error(
    "OperationOutcomeUnknown", "operation_outcome_unknown", 502, "ARM did not say whether the operation started"
)
OperationAbandoned = _error(
    "OperationAbandoned", "operation_abandoned", 502, "The run that started the operation stopped before its end"
)
OperationTimedOut = _error("OperationTimedOut", "operation_timed_out", 504, "The operation did not finish in time")
JobStoreUnavailable = _error("JobStoreUnavailable", "job_store_unavailable", 503, "The job history is unreachable")

ALL_ERRORS = [cls for cls in list(globals().values()) if isinstance(cls, type) and issubclass(cls, MccfBackupError)]
_BY_CODE = {cls.code: cls for cls in ALL_ERRORS}


def from_code(code: str | None, message: str, *, target: str | None = None) -> MccfBackupError:
    """The error a recorded job ended with, raised again for the caller that started it."""
    return _BY_CODE.get(code or "", MccfBackupError)(message, target=target)
