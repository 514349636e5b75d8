"""The ARM front door: authentication, RBAC deny list, api-version, throttling, routing, recording."""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from werkzeug.wrappers import Request, Response

from .arm import (
    API_VERSIONS,
    NAMESPACE,
    ROUTES,
    TYPE_NAMES,
    APP_NAME,
    GUID,
    ArmError,
    ManagedCcfService,
    error_response,
)
from .arm_platform import PLATFORM_API_VERSIONS, PLATFORM_ROUTES, STORAGE_ACCOUNT, file_services, permissions
from .fileshare.service import CREATE_DIR, CREATE_FILE, CREATE_SHARE, GET_FILE, GET_SHARE, LIST_DIR, PUT_RANGE
from .throttle import Throttle
from .tokens import ARM_AUDIENCES, TokenAuthority, TokenError

_ENCLAVE_VERSION = "2024-09-19-preview"
_ACTIONS = {"GET": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


class ArmApp:
    def __init__(
        self,
        service: ManagedCcfService,
        authority: TokenAuthority,
        throttle: Throttle,
        base_url: Callable[[], str],
        record_dir: Path | None = None,
    ) -> None:
        self.service = service
        self._authority = authority
        self._throttle = throttle
        self._base_url = base_url
        self.record_dir = record_dir
        self._storage_account = STORAGE_ACCOUNT
        self._record_lock = threading.Lock()
        self._record_count = 0

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        request = Request(environ)
        route, match = next(
            ((name, m) for name, pattern in ROUTES + PLATFORM_ROUTES if (m := pattern.fullmatch(request.path))),
            (None, None),
        )
        try:
            response = self.handle(request, route, match)
        except ArmError as err:
            response = error_response(err.status, err.code, err.message)
            for key, value in err.headers.items():
                response.headers[key] = value
        response.headers["x-ms-request-id"] = str(uuid.uuid4())
        response.headers["x-ms-correlation-request-id"] = request.headers.get(
            "x-ms-correlation-request-id", str(uuid.uuid4())
        )
        if self.record_dir is not None and route not in (None, "operation", *PLATFORM_API_VERSIONS):
            self._record(request, response)
        return response(environ, start_response)

    # --- pipeline ---
    def handle(self, request: Request, route: str | None, match: re.Match | None) -> Response:
        path = request.path
        try:
            caller = self._authority.verify(request.headers.get("Authorization"), ARM_AUDIENCES)
        except TokenError as err:
            raise ArmError(
                401,
                err.code,
                err.message,
                {
                    "WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/", '
                    f'error="invalid_token", error_description="{err.message}"'
                },
            ) from err
        api_version = request.args.get("api-version")
        if not api_version:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if match is None:
            raise ArmError(
                404,
                "InvalidResourceType" if "/providers/" in path else "NotFound",
                f"The resource type could not be found in the namespace '{NAMESPACE}' for api version '{api_version}'.",
            )
        versions = PLATFORM_API_VERSIONS.get(route, API_VERSIONS)
        if api_version not in versions:
            raise ArmError(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{api_version}' is invalid. The supported versions are '{','.join(versions)}'.",
            )
        groups = match.groupdict()
        if not GUID.fullmatch(groups["sub"]):
            raise ArmError(
                400,
                "InvalidSubscriptionId",
                f"The provided subscription identifier '{groups['sub']}' is malformed or invalid.",
            )
        kind = "reads" if request.method in ("GET", "HEAD") else "writes"
        allowed, remaining, retry_after = self._throttle.take(groups["sub"], kind)
        if not allowed:
            raise ArmError(
                429,
                "SubscriptionRequestsThrottled",
                f"Number of '{kind[:-1]}' requests for subscription '{groups['sub']}' exceeded the limit. "
                f"Please try again after '{retry_after}' seconds.",
                {"Retry-After": str(retry_after), f"x-ms-ratelimit-remaining-subscription-{kind}": "0"},
            )
        request.environ["emulator.caller"] = caller.client_id.lower()
        if route != "permissions":  # anyone may read their own permissions
            self._check_rbac(caller.client_id, caller.object_id, request.method, groups, route)
        remaining_header = {f"x-ms-ratelimit-remaining-subscription-{kind}": str(remaining)}
        try:
            with self.service.lock:
                response = getattr(self, f"_{route}")(request, groups, api_version)
        except ArmError as err:
            err.headers.update(remaining_header)  # ARM reports the budget on every answer, errors included
            raise
        response.headers.update(remaining_header)
        return response

    def _check_rbac(self, client_id: str, object_id: str, method: str, groups: dict, route: str) -> None:
        denied = self.service.options.deny.get(client_id.lower(), set())
        if not denied:
            return
        type_name = TYPE_NAMES[groups.get("type", "managedccfs").lower()] if groups.get("type") else "locations"
        action = f"{NAMESPACE}/{type_name}/" + (
            f"{groups['action'].lower()}/action" if route == "action" else _ACTIONS.get(method, "read")
        )
        if route == "file_services":
            action = "Microsoft.Storage/storageAccounts/fileServices/read"
        if "*" in denied or action.lower() in {d.lower() for d in denied}:
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{client_id}' with object id '{object_id}' does not have authorization to "
                f"perform action '{action}' over scope '/subscriptions/{groups['sub']}"
                f"{'/resourceGroups/' + groups['rg'] if groups.get('rg') else ''}' or the scope is "
                "invalid. If access was recently granted, please refresh your credentials.",
            )

    # --- representation ---
    def _view(self, record: dict, api_version: str) -> dict:
        properties = dict(record["properties"])
        properties["provisioningState"] = record["provisioningState"]
        if record["type"].lower().endswith("/managedccfs"):
            properties["appName"] = record["name"]
            properties.setdefault("appUri", f"https://{record['name'].lower()}.confidential-ledger.azure.com")
            properties.setdefault(
                "identityServiceUri",
                f"https://identity.confidential-ledger.core.azure.com/ledgerIdentity/{record['name'].lower()}",
            )
            properties.setdefault("runningState", "Active")
            if api_version < _ENCLAVE_VERSION:
                properties.pop("enclavePlatform", None)
        else:
            properties["ledgerName"] = record["name"]
            properties.setdefault("ledgerUri", f"https://{record['name'].lower()}.confidential-ledger.azure.com")
            properties.setdefault(
                "identityServiceUri",
                f"https://identity.confidential-ledger.core.azure.com/ledgerIdentity/{record['name'].lower()}",
            )
            properties.setdefault("ledgerInternalNamespace", record["name"].lower())
            properties.setdefault("runningState", "Active")
        view = {k: record[k] for k in ("id", "name", "type", "location", "tags", "systemData")}
        view["properties"] = properties
        return view

    def _json(self, body: object, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")

    def _resource_id(self, groups: dict) -> str:
        return (
            f"/subscriptions/{groups['sub']}/resourceGroups/{groups['rg']}/providers/{NAMESPACE}/"
            f"{TYPE_NAMES[groups['type'].lower()]}/{groups['name']}"
        )

    def _not_found(self, groups: dict) -> ArmError:
        return ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{NAMESPACE}/{TYPE_NAMES[groups['type'].lower()]}/{groups['name']}' under "
            f"resource group '{groups['rg']}' was not found. For more details please go to "
            "https://aka.ms/ARMResourceNotFoundFix",
        )

    def _async_headers(self, response: Response, operation: dict, sub: str, api_version: str) -> Response:
        base = f"{self._base_url()}/subscriptions/{sub}/providers/{NAMESPACE}/locations/{operation['location']}"
        response.headers["Azure-AsyncOperation"] = (
            f"{base}/operationStatuses/{operation['id']}?api-version={api_version}"
        )
        response.headers["Location"] = f"{base}/operationResults/{operation['id']}?api-version={api_version}"
        self._retry_after(response)
        return response

    def _retry_after(self, response: Response) -> None:
        if self.service.options.retry_after_ms is not None:
            response.headers["retry-after-ms"] = str(self.service.options.retry_after_ms)
        else:
            response.headers["Retry-After"] = str(self.service.options.retry_after_seconds)

    def _body(self, request: Request) -> dict:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError as exc:
            raise ArmError(
                400, "InvalidRequestContent", "The request content was invalid and could not be deserialized: not JSON."
            ) from exc
        if not isinstance(body, dict):
            raise ArmError(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: expected a JSON object.",
            )
        return body

    # --- routes ---
    def _permissions(self, request: Request, groups: dict, api_version: str) -> Response:
        if request.method != "GET":
            raise ArmError(405, "MethodNotAllowed", "Only GET is supported on permissions.")
        return self._json(permissions(self.service.options.deny.get(request.environ["emulator.caller"], set())))

    def _file_services(self, request: Request, groups: dict, api_version: str) -> Response:
        if request.method != "GET":
            raise ArmError(405, "MethodNotAllowed", "The emulator serves only GET on fileServices/default.")
        return self._json(file_services(groups, self._storage_account, self.service.options.share_soft_delete))

    def _resource(self, request: Request, groups: dict, api_version: str) -> Response:
        resource_id = self._resource_id(groups)
        record = self.service.get(resource_id)
        if request.method == "GET":
            if record is None:
                raise self._not_found(groups)
            return self._json(self._view(record, api_version))
        if request.method == "PUT":
            return self._put(request, groups, api_version, resource_id, record)
        if request.method == "DELETE":
            if record is None:
                return Response(status=204)
            if self.service.running(resource_id, ("backup", "restore", "create")):
                raise ArmError(409, "Conflict", "Another operation is in progress on this resource; retry later.")
            record["provisioningState"] = "Deleting"
            operation = self.service.start_operation("delete", resource_id, record["location"].replace(" ", "").lower())
            operation["correlation"] = request.headers.get("x-ms-correlation-request-id")
            return self._async_headers(Response(status=202), operation, groups["sub"], api_version)
        raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{request.method}' is not supported.")

    def _put(self, request: Request, groups: dict, api_version: str, resource_id: str, record: dict | None) -> Response:
        body = self._body(request)
        if not APP_NAME.fullmatch(groups["name"]):
            raise ArmError(
                400,
                "InvalidResourceName",
                f"The name '{groups['name']}' is invalid: 3-32 letters, digits or hyphens, starting "
                "and ending with a letter or digit.",
            )
        location = body.get("location")
        if not isinstance(location, str) or not location:
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        properties = body.get("properties") or {}
        if not isinstance(properties, dict):
            raise ArmError(400, "InvalidRequestContent", "'properties' must be an object.")
        writable = {
            k: v
            for k, v in properties.items()
            if k not in ("appName", "appUri", "identityServiceUri", "provisioningState", "ledgerName", "ledgerUri")
        }
        if record is not None:
            record["properties"].update(writable)
            record["tags"] = body.get("tags") or record["tags"]
            self.service.save()
            return self._json(self._view(record, api_version), 200)
        record = self.service.create_resource(
            resource_id,
            TYPE_NAMES[groups["type"].lower()],
            groups["name"],
            location,
            body.get("tags"),
            writable,
            state="Creating",
        )
        operation = self.service.start_operation("create", resource_id, location.replace(" ", "").lower())
        response = self._json(self._view(record, api_version), 201)
        return self._async_headers(response, operation, groups["sub"], api_version)

    def _list_rg(self, request: Request, groups: dict, api_version: str) -> Response:
        return self._list(groups, api_version, rg=groups["rg"])

    def _list_sub(self, request: Request, groups: dict, api_version: str) -> Response:
        return self._list(groups, api_version, rg=None)

    def _list(self, groups: dict, api_version: str, rg: str | None) -> Response:
        if rg is None:
            prefix = f"/subscriptions/{groups['sub']}/resourcegroups/".lower()
        else:
            prefix = f"/subscriptions/{groups['sub']}/resourcegroups/{rg}/".lower()
        wanted_type = f"{NAMESPACE}/{TYPE_NAMES[groups['type'].lower()]}".lower()
        self.service.settle_all()
        items = [
            self._view(r, api_version)
            for key, r in sorted(self.service.resources.items())
            if key.startswith(prefix) and r["type"].lower() == wanted_type
        ]
        return self._json({"value": items})

    def _action(self, request: Request, groups: dict, api_version: str) -> Response:
        body = self._body(request)
        action = groups["action"].lower()
        resource_id = self._resource_id(groups)
        for field_name in ("uri",) if action == "backup" else ("uri", "fileShareName", "restoreRegion"):
            if not isinstance(body.get(field_name), str) or not body[field_name]:
                raise ArmError(
                    400,
                    "InvalidRequestContent",
                    f"The request content was invalid: required property '{field_name}' is missing.",
                )
        record = self.service.get(resource_id)
        if action == "backup":
            return self._backup(
                groups, api_version, resource_id, record, body, request.headers.get("x-ms-correlation-request-id")
            )
        return self._restore(
            groups, api_version, resource_id, record, body, request.headers.get("x-ms-correlation-request-id")
        )

    def _backup(
        self, groups: dict, api_version: str, resource_id: str, record: dict | None, body: dict, correlation: str | None
    ) -> Response:
        if record is None:
            raise self._not_found(groups)
        if record["provisioningState"] != "Succeeded":
            raise ArmError(
                409,
                "Conflict",
                f"The resource is in provisioning state '{record['provisioningState']}'; a backup needs 'Succeeded'.",
            )
        if self.service.running(resource_id, ("backup", "restore", "delete")):
            raise ArmError(
                409,
                "Conflict",
                "A backup of this resource is already in progress.",
                # Only the soak's millisecond hint: azure-core retries any error carrying Retry-After, POST
                # included, which would hide this 409 from clients.
                {"retry-after-ms": str(self.service.options.retry_after_ms)}
                if self.service.options.retry_after_ms is not None
                else None,
            )
        account, query = self.service.parse_sas_uri(body["uri"])
        outcome = None
        try:
            probe = self.service.backup_share_name(record["name"], account)
            self.service.check_sas(
                account,
                query,
                probe,
                [
                    ("PUT", "", CREATE_SHARE),
                    ("PUT", "ledger", CREATE_DIR),
                    ("PUT", "ledger/ledger_1-1.committed", CREATE_FILE),
                    ("PUT", "ledger/ledger_1-1.committed", PUT_RANGE),
                ],
            )
        except ArmError as err:
            outcome = {"status": "Failed", "code": err.code, "message": err.message, "http": err.status}
        operation = self.service.start_operation(
            "backup", resource_id, record["location"].replace(" ", "").lower(), outcome
        )
        operation["backup_target"] = account
        operation["backup_sas"] = query  # Storage checks the SAS again on each write, as the backup runs
        operation["correlation"] = correlation  # x-ms-correlation-request-id, as ARM logs it
        operation["message"] = f"Backup Created for ManagedCCF App : {record['name']}."
        self.service.save()
        return self._async_headers(Response(status=202), operation, groups["sub"], api_version)

    def _restore(
        self, groups: dict, api_version: str, resource_id: str, record: dict | None, body: dict, correlation: str | None
    ) -> Response:
        if record is not None:
            raise ArmError(
                409,
                "Conflict",
                f"The resource '{groups['name']}' exists. Delete it before restoring a backup into the same name.",
            )
        account, query = self.service.parse_sas_uri(body["uri"])
        share = body["fileShareName"]
        region = body["restoreRegion"].replace(" ", "").lower()
        outcome, backup = None, None
        try:
            self.service.check_sas(
                account,
                query,
                share,
                [("GET", "", GET_SHARE), ("GET", "ledger", LIST_DIR), ("GET", "ledger/ledger_1-1.committed", GET_FILE)],
            )
            backup = self.service.backup_for_restore(groups["name"], account, share)
        except ArmError as err:
            outcome = {"status": "Failed", "code": err.code, "message": err.message, "http": err.status}
        operation = self.service.start_operation("restore", resource_id, region, outcome)
        if operation["outcome"] is None and backup is not None:
            tombstone = self.service.tombstones.get(resource_id.lower(), {})
            record = self.service.create_resource(
                resource_id,
                TYPE_NAMES[groups["type"].lower()],
                groups["name"],
                body["restoreRegion"],
                tombstone.get("tags"),
                tombstone.get("properties"),
                fixture=backup["fixture"],
                chunks=backup["chunks"],
                state="Creating",
            )
            record["restoredFrom"] = {"account": account, "fileShareName": share, "operation": operation["id"]}
        operation["correlation"] = correlation  # x-ms-correlation-request-id, as ARM logs it
        operation["message"] = f"Restore Created for ManagedCCF App : {groups['name']}."
        self.service.save()
        return self._async_headers(Response(status=202), operation, groups["sub"], api_version)

    def _operation(self, request: Request, groups: dict, api_version: str) -> Response:
        operation = self.service.operations.get(groups["op"])
        if operation is None or operation["location"] != groups["loc"].lower():
            raise ArmError(404, "OperationNotFound", f"The operation '{groups['op']}' was not found.")
        operation = self.service.settle(operation)
        if groups["kind"].lower() == "operationstatuses":
            body = {
                "id": request.path,
                "name": operation["id"],
                "status": operation["status"],
                "startTime": operation["startTime"],
            }
            if operation.get("endTime"):
                body["endTime"] = operation["endTime"]
                body["percentComplete"] = 100.0
            if operation.get("error"):
                body["error"] = operation["error"]
            response = self._json(body)
            if operation["status"] == "InProgress":
                self._retry_after(response)
            return response
        if operation["status"] == "InProgress":
            response = Response(status=202)
            response.headers["Location"] = request.url
            self._retry_after(response)
            return response
        if operation["status"] != "Succeeded":
            return error_response(operation.get("http", 500), operation["error"]["code"], operation["error"]["message"])
        if operation["kind"] in ("backup", "restore"):
            return self._json({"message": operation["message"]})
        if operation["kind"] == "create":
            record = self.service.get(operation["resource"])
            return self._json(self._view(record, api_version)) if record else Response(status=204)
        return Response(status=204)

    # --- traffic recording for oav ---
    def _record(self, request: Request, response: Response) -> None:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        body = None
        if request.get_data():
            try:
                body = json.loads(request.get_data())
            except ValueError:
                body = request.get_data(as_text=True)
        if isinstance(body, dict) and isinstance(body.get("uri"), str):
            body = dict(body, uri=redact_sas(body["uri"]))
        response_body = None
        if response.get_data():
            try:
                response_body = json.loads(response.get_data())
            except ValueError:
                response_body = response.get_data(as_text=True)
        entry = {
            "liveRequest": {"method": request.method, "url": request.url, "headers": headers, "body": body},
            "liveResponse": {
                "statusCode": str(response.status_code),
                "headers": dict(response.headers),
                "body": response_body,
            },
        }
        with self._record_lock:
            self._record_count += 1
            number = self._record_count
        self.record_dir.mkdir(parents=True, exist_ok=True)
        (self.record_dir / f"{number:05d}-{request.method.lower()}.json").write_text(json.dumps(entry, indent=1))


def redact_sas(uri: str) -> str:
    """Replace a SAS signature with a marker: recordings and logs never hold a usable SAS."""
    parts = urlsplit(uri)
    query = [(k, "REDACTED" if k.lower() == "sig" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query)))
