"""ARM control plane for Microsoft.ConfidentialLedger managedCCFs and ledgers.

Shapes follow the official swagger (tests replay this traffic through
Microsoft's ``oav``). Long-running operations follow the ARM async protocol:
202 + ``Azure-AsyncOperation`` + ``Location`` + ``Retry-After``; the status
resource reports InProgress then Succeeded/Failed/Canceled; ``Location``
answers 202 until the end, then the final result. Operations complete
lazily, when a request looks at them after their due time, so no
background thread is needed and nothing races a test.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from . import ledger
from .clock import Clock, iso
from .faults import FaultInjector
from .fileshare.auth import AuthError, Operation, StorageAuthorizer, Target
from .fileshare.service import CREATE_SHARE, GET_SHARE
from .fileshare.store import FileStore, StorageError
from .store import read_json, write_json

API_VERSIONS = ("2023-06-28-preview", "2024-07-09-preview", "2024-09-19-preview", "2025-06-10-preview")
NAMESPACE = "Microsoft.ConfidentialLedger"
RESTORE_LIMIT = dt.timedelta(days=90)
APP_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]")
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

_P = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _P + r"/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ConfidentialLedger/(?P<type>managedCCFs|ledgers)"
ROUTES = [
    ("resource", re.compile(rf"{_RG}/(?P<name>[^/]+)", re.I)),
    ("action", re.compile(rf"{_RG}/(?P<name>[^/]+)/(?P<action>backup|restore)", re.I)),
    ("list_rg", re.compile(rf"{_RG}/?", re.I)),
    ("list_sub", re.compile(rf"{_P}/providers/Microsoft\.ConfidentialLedger/(?P<type>managedCCFs|ledgers)/?", re.I)),
    (
        "operation",
        re.compile(
            rf"{_P}/providers/Microsoft\.ConfidentialLedger/locations/(?P<loc>[^/]+)/"
            r"(?P<kind>operationStatuses|operationResults)/(?P<op>[^/]+)",
            re.I,
        ),
    ),
]
TYPE_NAMES = {"managedccfs": "managedCCFs", "ledgers": "ledgers"}


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str) -> Response:
    return Response(
        json.dumps({"error": {"code": code, "message": message}}),
        status=status,
        content_type="application/json; charset=utf-8",
    )


@dataclass
class ArmOptions:
    """Behaviour knobs tests and benchmarks turn."""

    operation_seconds: float = 1.0  # how long backup/restore/create/delete take
    retry_after_seconds: int = 1  # Retry-After on 202s
    # When set, 202s and 409s carry retry-after-ms instead (which azure-core honours): lets a soak run
    # hundreds of rounds of real polling in seconds. Azure's ARM sends whole seconds.
    retry_after_ms: int | None = None
    deny: dict[str, set[str]] = field(default_factory=dict)  # client id -> denied actions ('*' for all)
    # the storage account's share soft delete policy, as ARM's fileServices/default reports it
    share_soft_delete: dict = field(default_factory=lambda: {"enabled": True, "days": 30})


class ManagedCcfService:
    """State and rules of the resource provider; the WSGI app is ``ArmApp`` below."""

    def __init__(
        self,
        state_dir: Path,
        clock: Clock,
        files: FileStore,
        storage_auth: StorageAuthorizer,
        file_endpoint: Callable[[], str],
        faults: FaultInjector,
        options: ArmOptions,
    ) -> None:
        self._path = state_dir / "arm.json"
        state = read_json(self._path, {})
        self.resources: dict[str, dict] = state.get("resources", {})
        self.tombstones: dict[str, dict] = state.get("tombstones", {})
        self.operations: dict[str, dict] = state.get("operations", {})
        self.backups: dict[str, dict] = state.get("backups", {})
        self._clock, self._files, self._storage_auth = clock, files, storage_auth
        self._file_endpoint, self._faults, self.options = file_endpoint, faults, options
        self.lock = threading.RLock()  # the front door holds it per request: werkzeug serves threads
        self._dirty = False

    def save(self) -> None:
        """Mark the state changed; ``flush`` writes it (the settler does, twice a second, and ``stop``),
        so a burst of hundreds of operations does not rewrite the whole file for each one."""
        self._dirty = True

    def flush(self) -> None:
        with self.lock:
            if not self._dirty:
                return
            self._dirty = False
            write_json(
                self._path,
                {
                    "resources": self.resources,
                    "tombstones": self.tombstones,
                    "operations": self.operations,
                    "backups": self.backups,
                },
            )

    # --- resources ---
    def create_resource(
        self,
        resource_id: str,
        type_name: str,
        name: str,
        location: str,
        tags: dict | None,
        properties: dict | None,
        fixture: str | None = None,
        chunks: int = 1,
        state: str = "Succeeded",
        caller: str = "emulator",
    ) -> dict:
        now = iso(self._clock.now())
        record = {
            "id": resource_id,
            "name": name,
            "type": f"{NAMESPACE}/{type_name}",
            "location": location,
            "tags": tags or {},
            "systemData": {
                "createdBy": caller,
                "createdByType": "Application",
                "createdAt": now,
                "lastModifiedBy": caller,
                "lastModifiedByType": "Application",
                "lastModifiedAt": now,
            },
            "properties": dict(properties or {}),
            "provisioningState": state,
            "ledger": {"fixture": fixture or ledger.default_fixture(name), "chunks": chunks},
        }
        with self.lock:
            self.resources[resource_id.lower()] = record
            self.save()
        return record

    def get(self, resource_id: str) -> dict | None:
        with self.lock:
            self._settle_for(resource_id)
            return self.resources.get(resource_id.lower())

    def _settle_for(self, resource_id: str) -> None:
        for operation in list(self.operations.values()):
            if operation["resource"].lower() == resource_id.lower():
                self.settle(operation)

    def settle_all(self) -> None:
        """Finish every due operation, taking the lock per operation so requests interleave."""
        now = time.time()
        with self.lock:
            due = [o for o in self.operations.values() if o["status"] == "InProgress" and now >= o["due"]]
        for operation in due:
            self.settle(operation)

    # --- operations ---
    def start_operation(self, kind: str, resource_id: str, location: str, outcome: dict | None = None) -> dict:
        failure = self._faults.take_operation_failure(kind)
        if failure is not None:
            outcome = {"status": failure.status, "code": failure.code, "message": failure.message, "http": 500}
        operation = {
            "id": str(uuid.uuid4()),
            "kind": kind,
            "resource": resource_id,
            "location": location,
            "status": "InProgress",
            "startTime": iso(self._clock.now()),
            "due": time.time() + self.options.operation_seconds,
            "outcome": outcome,  # None: succeeds; else the failure it ends with
        }
        with self.lock:
            self.operations[operation["id"]] = operation
            self.save()
        return operation

    def settle(self, operation: dict) -> dict:
        """Finish an operation whose time has come (idempotent)."""
        with self.lock:
            if operation["status"] != "InProgress" or time.time() < operation["due"]:
                return operation
            outcome = operation["outcome"]
            if outcome is None:
                try:
                    operation["result"] = self._complete(operation)
                    operation["status"] = "Succeeded"
                except ArmError as err:
                    outcome = {"status": "Failed", "code": err.code, "message": err.message, "http": err.status}
            if outcome is not None:
                operation["status"] = outcome["status"]
                operation["error"] = {"code": outcome["code"], "message": outcome["message"]}
                operation["http"] = outcome.get("http", 500)
                self._on_failure(operation)
            operation["endTime"] = iso(self._clock.now())
            self.save()
            return operation

    def _complete(self, operation: dict) -> dict | None:
        kind, key = operation["kind"], operation["resource"].lower()
        resource = self.resources.get(key)
        if kind == "create" and resource:
            resource["provisioningState"] = "Succeeded"
        elif kind == "delete" and resource:
            self.tombstones[key] = self.resources.pop(key)
        elif kind == "restore" and resource:
            resource["provisioningState"] = "Succeeded"
        elif kind == "backup" and resource:
            if operation.get("backup_sas") is not None:  # the SAS may have expired since the POST
                self.check_sas(
                    operation["backup_target"],
                    operation["backup_sas"],
                    self.backup_share_name(resource["name"], operation["backup_target"]),
                    [("PUT", "", CREATE_SHARE)],
                )
            return self._write_backup(resource, operation["backup_target"])
        return None

    def _on_failure(self, operation: dict) -> None:
        key = operation["resource"].lower()
        resource = self.resources.get(key)
        if resource is None:
            return
        if operation["kind"] in ("create", "restore"):
            resource["provisioningState"] = "Failed"
        elif operation["kind"] == "delete":
            resource["provisioningState"] = "Succeeded"

    def running(self, resource_id: str, kinds: tuple[str, ...]) -> dict | None:
        self._settle_for(resource_id)
        return next(
            (
                o
                for o in self.operations.values()
                if o["resource"].lower() == resource_id.lower() and o["kind"] in kinds and o["status"] == "InProgress"
            ),
            None,
        )

    # --- backup and restore against the storage account named by the SAS URL ---
    def parse_sas_uri(self, uri: str) -> tuple[str, str]:
        """Return (account, sas query) or raise an ARM error that says what is wrong with ``uri``."""
        parts = urlsplit(uri)
        endpoint = urlsplit(self._file_endpoint())
        if parts.scheme != "https":
            raise ArmError(400, "InvalidSasUri", "The 'uri' must be an https File service SAS URL.")
        if parts.netloc.lower() != endpoint.netloc.lower():
            raise ArmError(
                400,
                "InvalidSasUri",
                f"The storage endpoint '{parts.scheme}://{parts.netloc}' in 'uri' cannot be reached; "
                "it must be the File service endpoint of the storage account.",
            )
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) != 1:
            raise ArmError(
                400,
                "InvalidSasUri",
                "The 'uri' must be the File service URL of the account (no share or path) with a SAS.",
            )
        if "sig=" not in parts.query:
            raise ArmError(400, "InvalidSasUri", "The 'uri' carries no shared access signature.")
        return segments[0], parts.query

    def check_sas(self, account: str, query: str, share: str, steps: list[tuple[str, str, Operation]]) -> None:
        """Check the SAS as the storage service would for each request the RP is about to make."""
        for method, path, operation in steps:
            target = Target(account, share, path)
            url_path = f"/{account}/{share}" + (f"/{path}" if path else "")
            extra = {"restype": "share"} if operation is CREATE_SHARE or operation is GET_SHARE else {}
            builder = EnvironBuilder(
                method=method,
                path=url_path,
                base_url=self._file_endpoint(),
                query_string=query + "".join(f"&{k}={v}" for k, v in extra.items()),
                environ_base={"REMOTE_ADDR": "127.0.0.1"},
            )
            try:
                self._storage_auth.authorize(Request(builder.get_environ()), target, operation)
            except AuthError as err:
                raise ArmError(
                    400,
                    "StorageAccessDenied",
                    f"The storage account refused the SAS for {operation.name}: "
                    f"{err.code}: {err.message.splitlines()[0]}",
                ) from err

    def backup_share_name(self, app_name: str, account: str) -> str:
        moment = self._clock.now()
        while True:
            name = f"{app_name.lower()}-{moment.strftime('%Y%m%d%H%M%S')}"
            if not self._files.share_exists(account, name):
                return name
            moment += dt.timedelta(seconds=1)

    def _write_backup(self, resource: dict, account: str) -> dict:
        share = self.backup_share_name(resource["name"], account)
        state = resource["ledger"]
        chunks = ledger.committed_chunks(state["fixture"])
        taken = chunks[: max(1, min(state["chunks"], len(chunks)))]
        try:
            self._files.create_share(account, share)
            self._files.create_directory(account, share, ledger.LEDGER_DIR, {})
            self._files.create_directory(account, share, ledger.SNAPSHOT_DIR, {})
            for chunk in taken:
                self._files.write_file(account, share, f"{ledger.LEDGER_DIR}/{chunk.name}", chunk.read_bytes())
        except StorageError as err:
            raise ArmError(500, "BackupFailed", f"Writing the backup share failed: {err.code}") from err
        state["chunks"] = min(state["chunks"] + 1, len(chunks))
        self.backups[f"{account}/{share}"] = {
            "resource": resource["id"],
            "app": resource["name"],
            "fixture": state["fixture"],
            "chunks": len(taken),
            "created": iso(self._clock.now()),
        }
        return {"fileShareName": share, "chunks": [c.name for c in taken]}

    def backup_for_restore(self, app_name: str, account: str, share: str) -> dict:
        record = self.backups.get(f"{account}/{share}")
        if not self._files.share_exists(account, share):
            raise ArmError(
                404, "FileShareNotFound", f"The file share '{share}' does not exist in storage account '{account}'."
            )
        if record is None:
            raise ArmError(400, "InvalidBackup", f"The file share '{share}' does not hold a Managed CCF backup.")
        if record["app"].lower() != app_name.lower():
            raise ArmError(
                400,
                "AppNameMismatch",
                f"The backup in '{share}' was taken from app '{record['app']}'; a restore must use the same app name.",
            )
        created = dt.datetime.strptime(record["created"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
        age = self._clock.now() - created
        if age > RESTORE_LIMIT:
            raise ArmError(
                400,
                "BackupTooOld",
                f"The backup '{share}' is {age.days} days old; backups older than 90 days cannot be restored.",
            )
        return record
