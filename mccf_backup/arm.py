"""The Managed CCF control plane client: get, delete, backup, restore, operation status.

Built on azure-mgmt-core's ARMPipelineClient, so retries (429 and 5xx, honouring Retry-After),
ARM challenge authentication and redaction of headers and query strings in logs come from the
library, not from hand-written loops. It starts operations and looks at them once; it never waits
for one to end (the job lifecycle does the following, a step at a time).

Two changes to the library's retry, both about POST (backup, restore), which is not idempotent:
a 5xx, a dropped connection or a timeout after a POST leaves it unknown whether ARM started the
operation, so it is never retried blindly (azure-core would retry 500/503/504); the caller looks
first (``OperationOutcomeUnknown``). And 429 has its own, larger budget: a throttled request was
refused outright, so waiting for the Retry-After ARM names and trying again is always safe, and
a fan-out over hundreds of targets meets the subscription's write limit many times per request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import requests
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.core.exceptions import ServiceResponseError
from azure.core.pipeline import PipelineResponse, policies
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

from . import __version__
from .errors import AuthenticationFailed, AzureRequestFailed, OperationInProgress, OperationOutcomeUnknown
from .errors import PermissionDenied, TargetNotFound
from .redaction import redact
from .targets import Target

ARM_SCOPE = "https://management.azure.com/.default"  # the public cloud's, and the default for any other host
# The sovereign clouds' ARM hosts and their token scopes (azure-mgmt-core's AzureCloud settings). A
# token for the public cloud's audience is refused by their ARM, so the scope follows ARM_ENDPOINT.
CLOUD_SCOPES = {
    "management.azure.com": ARM_SCOPE,
    "management.chinacloudapi.cn": "https://management.chinacloudapi.cn/.default",
    "management.usgovcloudapi.net": "https://management.usgovcloudapi.net/.default",
}


def arm_scope(endpoint: str) -> str:
    """The token scope for the ARM at ``endpoint``: its cloud's, or the public cloud's for any other host
    (as the SDK's own default)."""
    return CLOUD_SCOPES.get((urlsplit(endpoint).hostname or "").lower(), ARM_SCOPE)


FINAL_STATES = {"Succeeded", "Failed", "Canceled"}
THROTTLE_RETRIES = 60  # ARM's write bucket refills 10/s: enough for any queue of waiting workers
AMBIGUOUS_STATUS = {500, 502, 503, 504}
LOST = "Lost"  # ARM answers 404 for the operation: it forgot it, or a passing fault says so


class ArmRetryPolicy(policies.RetryPolicy):
    """azure-core's RetryPolicy, except: POST is retried only on 429, and 429 has its own budget."""

    def __init__(self, *, throttle_retries: int = THROTTLE_RETRIES, **kwargs) -> None:
        super().__init__(**kwargs)
        self._throttle_retries = throttle_retries

    def configure_retries(self, options: dict) -> dict:
        settings = super().configure_retries(options)
        settings["throttle"] = options.pop("retry_throttle", self._throttle_retries)
        return settings

    def is_retry(self, settings: dict, response: PipelineResponse) -> bool:
        status = response.http_response.status_code
        if status == 429:
            return settings["throttle"] > 0
        if response.http_request.method.upper() == "POST":
            return False
        return super().is_retry(settings, response)

    def increment(self, settings: dict, response=None, error=None) -> bool:
        if error is None and isinstance(response, PipelineResponse) and response.http_response.status_code == 429:
            settings["throttle"] -= 1
            settings["history"].append(
                policies.RequestHistory(response.http_request, http_response=response.http_response)
            )
            return settings["throttle"] >= 0
        return super().increment(settings, response=response, error=error)


def retry_after_seconds(response: HttpResponse) -> float | None:
    """How long ARM asks to wait: Retry-After in seconds, or the millisecond headers azure-core also
    honours (retry-after-ms, x-ms-retry-after-ms); None when absent or unreadable."""
    headers = response.headers
    for name, scale in (("Retry-After", 1.0), ("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def correlation_id(job_id: str) -> str:
    """The GUID sent as x-ms-correlation-request-id for a job: ARM's logs (and a support case) can then
    name every request one job made, retries and the look-again after a lost answer included."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mccf-backup:job:{job_id}"))


@dataclass(frozen=True)
class StartedOperation:
    """What ARM said when an operation was accepted; enough to look at it again later (plain URLs)."""

    status_url: str | None  # Azure-AsyncOperation
    location_url: str | None  # Location
    retry_after: float  # seconds ARM asked to wait before looking again
    completed: bool  # ARM answered 200: done already


@dataclass(frozen=True)
class OperationStatus:
    status: str  # InProgress | Succeeded | Failed | Canceled
    error_code: str | None = None
    error_message: str | None = None
    retry_after: float = 10

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATES


def _arm_error(response: HttpResponse) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    return str(error.get("code") or response.status_code), redact(str(error.get("message") or response.reason or ""))


class ManagedCcfClient:
    def __init__(
        self,
        endpoint: str,
        credential: TokenCredential,
        api_version: str,
        read_timeout: float = 60,
        session: requests.Session | None = None,
        **transport_kwargs,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._api_version = api_version
        self._client = ARMPipelineClient(
            base_url=self._endpoint,
            # every request, the poller's included: a hung connection fails after read_timeout, not 300 s
            transport=RequestsTransport(
                session=session,
                session_owner=session is None,
                read_timeout=read_timeout,
                connection_timeout=min(read_timeout, 30),
            ),
            policies=[
                policies.RequestIdPolicy(),
                policies.HeadersPolicy(),
                policies.UserAgentPolicy(sdk_moniker=f"mccf-backup/{__version__}"),
                ArmRetryPolicy(**{k: v for k, v in transport_kwargs.items() if k.startswith("retry_")}),
                ARMChallengeAuthenticationPolicy(credential, arm_scope(endpoint)),
                policies.ContentDecodePolicy(),
                ARMHttpLoggingPolicy(),
                policies.DistributedTracingPolicy(),
            ],
        )
        self._send_kwargs = {k: v for k, v in transport_kwargs.items() if not k.startswith("retry_")}

    # --- plumbing ---
    def _url(self, target: Target, suffix: str = "") -> str:
        return f"{self._endpoint}{target.resource_id}{suffix}?api-version={self._api_version}"

    def _send(self, request: HttpRequest, target: Target | None, action: str) -> PipelineResponse:
        try:
            response = self._client.send_request(request, _return_pipeline_response=True, **self._send_kwargs)
        except ClientAuthenticationError as exc:
            raise AuthenticationFailed(
                f"Could not get an ARM token to {action}: {redact(str(exc).splitlines()[0])}. Check that the app's "
                "managed identity exists (and AZURE_CLIENT_ID, for a user-assigned one).",
                target=str(target) if target else None,
            ) from exc
        except ServiceResponseError as exc:  # sent, then no answer: a POST may have been acted on
            if request.method.upper() == "POST":
                raise OperationOutcomeUnknown(
                    f"ARM did not answer the request to {action} ({redact(str(exc).splitlines()[0])}); it may or "
                    "may not have started.",
                    target=str(target) if target else None,
                ) from exc
            raise AzureRequestFailed(
                f"ARM did not answer the request to {action}: {redact(str(exc).splitlines()[0])}. Retry later.",
                target=str(target) if target else None,
            ) from exc
        except ServiceRequestError as exc:  # never sent: nothing can have started
            raise AzureRequestFailed(
                f"ARM could not be reached to {action}: {redact(str(exc).splitlines()[0])}. Retry later.",
                target=str(target) if target else None,
            ) from exc
        if request.method.upper() == "POST" and response.http_response.status_code in AMBIGUOUS_STATUS:
            code, message = _arm_error(response.http_response)
            raise OperationOutcomeUnknown(
                f"ARM answered {response.http_response.status_code} {code} to {action}: {message} It may or may "
                "not have started.",
                target=str(target) if target else None,
            )
        return response

    def _raise_for(self, response: HttpResponse, target: Target, action: str) -> None:
        if response.status_code < 400:
            return
        code, message = _arm_error(response)
        where = str(target)
        if response.status_code == 403:
            raise PermissionDenied(
                f"ARM refused to {action}: {message} Grant the app's identity a role with this action on the "
                "target's resource group (see docs/deploy.md, 'Permissions').",
                target=where,
            )
        if response.status_code == 404 and code in ("ResourceNotFound", "ResourceGroupNotFound", "404"):
            raise TargetNotFound(
                f"The {target.resource_type} '{target.name}' does not exist in resource group "
                f"'{target.resource_group}' of subscription {target.subscription} ({code}). Check MCCF_TARGETS.",
                target=where,
            )
        if response.status_code == 409:
            busy = OperationInProgress(f"ARM refused to {action} ({code}): {message}", target=where)
            busy.retry_after = retry_after_seconds(response)  # when to look again, if ARM says
            raise busy
        if response.status_code == 401:
            raise AuthenticationFailed(f"ARM did not accept the app's token to {action}: {message}", target=where)
        raise AzureRequestFailed(f"ARM answered {response.status_code} {code} to {action}: {message}", target=where)

    # --- resources ---
    def get(self, target: Target) -> dict | None:
        """The resource, or None when it does not exist."""
        response = self._send(HttpRequest("GET", self._url(target)), target, "read the instance").http_response
        if response.status_code == 404:
            return None
        self._raise_for(response, target, "read the instance")
        return response.json()

    def locations(self, subscription: str, resource_group: str, resource_type: str) -> dict[str, str]:
        """Every instance of a type in a resource group, as lower-cased resource ID -> location: one paged
        list per resource group and run instead of one GET per target, which keeps a large fan-out inside
        ARM's read limit. Resource-group scope, because that is where the app's role is assigned."""
        url: str | None = (
            f"{self._endpoint}/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
            f"Microsoft.ConfidentialLedger/{resource_type}?api-version={self._api_version}"
        )
        found: dict[str, str] = {}
        while url:
            self._check_same_host(url)
            response = self._send(HttpRequest("GET", url), None, f"list the {resource_type}").http_response
            if response.status_code == 404:
                return found  # the resource group does not exist: none of its targets do
            if response.status_code >= 400:
                code, message = _arm_error(response)
                if response.status_code == 403:
                    raise PermissionDenied(f"ARM refused to list the {resource_type} of {resource_group}: {message}")
                raise AzureRequestFailed(f"ARM answered {response.status_code} {code} to a list: {message}")
            body = response.json()
            for item in body.get("value") or []:
                found[str(item.get("id", "")).lower()] = str(item.get("location") or "")
            url = body.get("nextLink")
        return found

    def permissions(self, target: Target) -> list[dict]:
        """The identity's effective permissions at the target (Permissions - List For Resource): what ARM
        would allow, read without trying it."""
        url = (
            f"{self._endpoint}{target.resource_id}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01"
        )
        entries: list[dict] = []
        while url:
            self._check_same_host(url)
            response = self._send(HttpRequest("GET", url), target, "read its own permissions").http_response
            self._raise_for(response, target, "read its own permissions")
            body = response.json()
            entries += [entry for entry in body.get("value") or [] if isinstance(entry, dict)]
            url = body.get("nextLink")
        return entries

    def file_service(self, storage_account_id: str) -> dict | None:
        """The storage account's file service settings (share soft delete), or None when ARM refuses
        to say (no read role on the account) or the account does not exist."""
        url = f"{self._endpoint}{storage_account_id}/fileServices/default?api-version=2023-05-01"
        response = self._send(HttpRequest("GET", url), None, "read the file service settings").http_response
        if response.status_code in (403, 404):
            return None
        if response.status_code >= 400:
            code, message = _arm_error(response)
            raise AzureRequestFailed(f"ARM answered {response.status_code} {code} to a file service read: {message}")
        return response.json()

    def _start(
        self, target: Target, suffix: str, method: str, body: dict | None, action: str, correlation: str | None
    ) -> StartedOperation:
        headers = {"x-ms-correlation-request-id": correlation_id(correlation)} if correlation else None
        request = HttpRequest(method, self._url(target, suffix), json=body, headers=headers)
        response = self._send(request, target, action).http_response
        self._raise_for(response, target, action)
        headers = response.headers
        return StartedOperation(
            status_url=headers.get("Azure-AsyncOperation"),
            location_url=headers.get("Location"),
            retry_after=retry_after_seconds(response) or 10,
            completed=response.status_code in (200, 204)
            or not (headers.get("Azure-AsyncOperation") or headers.get("Location")),
        )

    def start_backup(
        self, target: Target, sas_url: str, restore_region: str | None = None, job_id: str | None = None
    ) -> StartedOperation:
        body = {"uri": sas_url}
        if restore_region:
            body["restoreRegion"] = restore_region
        return self._start(target, "/backup", "POST", body, "start a backup", job_id)

    def start_restore(
        self, target: Target, sas_url: str, share: str, restore_region: str, job_id: str | None = None
    ) -> StartedOperation:
        body = {"uri": sas_url, "fileShareName": share, "restoreRegion": restore_region}
        return self._start(target, "/restore", "POST", body, "start a restore", job_id)

    def start_delete(self, target: Target, job_id: str | None = None) -> StartedOperation:
        return self._start(target, "", "DELETE", None, "delete the instance", job_id)

    # --- operations ---
    def _check_same_host(self, url: str) -> None:
        """Never send the ARM token anywhere but ARM: operation URLs must be on the ARM endpoint."""
        ours, theirs = urlsplit(self._endpoint), urlsplit(url)
        if (theirs.scheme, theirs.netloc.lower()) != (ours.scheme, ours.netloc.lower()):
            raise AzureRequestFailed(
                f"ARM returned an operation URL on another host ({theirs.scheme}://{theirs.netloc}); not following it."
            )

    def status(self, started: StartedOperation, target: Target) -> OperationStatus:
        """Look at an operation once (the HTTP API's poll): never blocks, never loops."""
        if started.completed:
            return OperationStatus("Succeeded")
        if started.status_url:
            self._check_same_host(started.status_url)
            response = self._send(HttpRequest("GET", started.status_url), target, "read operation status").http_response
            if response.status_code == 404:
                return OperationStatus(
                    LOST, "OperationNotFound", "ARM no longer knows this operation.", started.retry_after
                )
            self._raise_for(response, target, "read operation status")
            body = response.json()
            error = body.get("error") or {}
            retry = retry_after_seconds(response)
            return OperationStatus(
                str(body.get("status", "InProgress")),
                error.get("code"),
                redact(error["message"]) if error.get("message") else None,
                retry or started.retry_after,
            )
        self._check_same_host(started.location_url or "")
        response = self._send(HttpRequest("GET", started.location_url), target, "read operation result").http_response
        if response.status_code == 202:
            return OperationStatus("InProgress", retry_after=retry_after_seconds(response) or started.retry_after)
        if response.status_code == 404:
            return OperationStatus(
                LOST, "OperationNotFound", "ARM no longer knows this operation.", started.retry_after
            )
        if response.status_code < 300:
            return OperationStatus("Succeeded")
        code, message = _arm_error(response)
        return OperationStatus("Failed", code, message)
