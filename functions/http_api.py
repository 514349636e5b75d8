"""HTTP API for internal tools and Logic Apps (asynchronous request-reply: 202 + Location)."""

from __future__ import annotations

import json
import math
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import azure.functions as func

from mccf_backup import errors
from mccf_backup.inputs import JOB_ID, idempotency_key
from mccf_backup.settings import public_origin_from_env

if TYPE_CHECKING:
    from mccf_backup.jobs import Job

from .engine import authorize, may_follow, restore_request, service_from_environment
from .http_helpers import STATUS_BY_CODE, handles_errors, json_body, json_response, operation_url, problem
from .invocation import thread_setup
from .openapi_v2 import to_swagger2

bp = func.Blueprint()
OPENAPI = Path(__file__).with_name("openapi.json")
MIN_RETRY_AFTER, MAX_RETRY_AFTER = 1, 60


def _idempotency_key(req: func.HttpRequest) -> str | None:
    """The Idempotency-Key header, checked up front: a malformed one is refused even where unused (a dry run)."""
    key = req.headers.get("Idempotency-Key")
    return None if key is None else idempotency_key(key)


def _accepted(req: func.HttpRequest, job: Job, origin: str | None) -> func.HttpResponse:
    location = operation_url(origin, job.id, req.params.get("code"))
    retry_after = str(math.ceil(min(MAX_RETRY_AFTER, max(MIN_RETRY_AFTER, job.seconds_until_due()))))
    return json_response(
        {**job.to_dict(), "statusUrl": location}, 202, {"Location": location, "Retry-After": retry_after}
    )


@bp.route(route="backups", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def start_backup(req: func.HttpRequest) -> func.HttpResponse:
    service = service_from_environment()
    who = authorize(req.headers, "backup", service.settings)
    key = _idempotency_key(req)
    body = json_body(req, {"target": str}, required=("target",))
    job = service.start_backup(body["target"], "http", who, idempotency_key=key)
    return _accepted(req, job, service.settings.public_origin)


@bp.route(route="backups", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def list_backups(req: func.HttpRequest) -> func.HttpResponse:
    service = service_from_environment()
    authorize(req.headers, "read", service.settings)
    reference = req.params.get("target")
    if not reference:
        raise errors.InvalidRequest("Query parameter 'target' (app name or resource ID) is required.", field="target")
    target, backups = service.list_backups(reference, contains_txid=req.params.get("containsTxid"))
    return json_response({"target": target.resource_id, "backups": [b.to_dict() for b in backups]})


@bp.route(route="backups/{share}/verify", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def verify_backup(req: func.HttpRequest) -> func.HttpResponse:
    service = service_from_environment()
    who = authorize(req.headers, "backup", service.settings)
    body = json_body(req, {"target": str}, required=("target",))
    job = service.request_verify(body["target"], req.route_params.get("share", ""), "http", who)
    return _accepted(req, job, service.settings.public_origin)


@bp.route(route="backups/{share}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def describe_backup(req: func.HttpRequest) -> func.HttpResponse:
    """What a backup holds; with ledger=true its ledger read through too when small enough to take seconds
    (a larger one is the CLI's inspect: minutes are not a request's work)."""
    service = service_from_environment()
    authorize(req.headers, "read", service.settings)
    reference = req.params.get("target")
    if not reference:
        raise errors.InvalidRequest("Query parameter 'target' (app name or resource ID) is required.", field="target")
    read = req.params.get("ledger", "false")
    if read not in ("true", "false"):
        raise errors.InvalidRequest("Query parameter 'ledger' is true or false.", field="ledger")
    share = req.route_params.get("share", "")
    return json_response(service.inspect(reference, share, read_ledger=read == "true", inline=True))


@bp.route(route="backups/{share}/pin", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def pin_backup(req: func.HttpRequest) -> func.HttpResponse:
    """Keep a backup as a golden copy: retention never deletes it (role: backup, as it only keeps more)."""
    service = service_from_environment()
    who = authorize(req.headers, "backup", service.settings)
    body = json_body(req, {"target": str, "label": str, "note": str}, required=("target", "label"))
    share = req.route_params.get("share", "")
    backup = service.pins.pin(body["target"], share, body["label"], body.get("note") or None, "http", who)
    return json_response(backup.to_dict())


@bp.route(route="backups/{share}/unpin", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def unpin_backup(req: func.HttpRequest) -> func.HttpResponse:
    """Give a golden copy back to retention, which may then delete it: the restore role, as for what destroys."""
    service = service_from_environment()
    who = authorize(req.headers, "unpin", service.settings)
    body = json_body(req, {"target": str}, required=("target",))
    backup = service.pins.unpin(body["target"], req.route_params.get("share", ""), "http", who)
    return json_response(backup.to_dict())


@bp.route(route="restores", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def start_restore(req: func.HttpRequest) -> func.HttpResponse:
    service = service_from_environment()
    who = authorize(req.headers, "restore", service.settings)
    key = _idempotency_key(req)
    body = json_body(
        req,
        {
            "target": str,
            "share": str,
            "label": str,
            "before": dict,
            "restoreRegion": str,
            "dryRun": bool,
            "replace": bool,
            "confirm": str,
        },
        required=("target",),
    )
    request = restore_request(
        target=body["target"],
        share=body.get("share") or None,  # "" is how some callers (Logic Apps) leave a field out
        region=body.get("restoreRegion") or None,
        replace=bool(body.get("replace")),
        confirm=body.get("confirm") or None,
        label=body.get("label") or None,
        before=body.get("before"),
        trigger="http",
        caller=who,
    )
    if body.get("dryRun"):
        return json_response(service.check_restore(request).to_dict())
    job = service.start_restore(request, idempotency_key=key)
    return _accepted(req, job, service.settings.public_origin)


@bp.route(route="operations/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def get_operation(req: func.HttpRequest) -> func.HttpResponse:
    service = service_from_environment()
    right = may_follow(req.headers, service.settings)  # first: a stranger learns nothing, not even the id rules
    job_id = req.route_params.get("id", "")
    if not JOB_ID.fullmatch(job_id):
        raise errors.OperationNotFound("That is not an operation id (13 digits and 8 hex digits).", field="id")
    job = service.poll(job_id, lambda found: right.may_see(found.kind))  # another kind: as if it did not exist
    if not job.done:
        return _accepted(req, job, service.settings.public_origin)
    if job.status == "succeeded":
        return json_response(job.to_dict())
    status = STATUS_BY_CODE.get(job.error_code or "", 500)
    return problem(
        status,
        job.error_code or "internal_error",
        f"The {job.kind} failed",
        job.error_message or "",
        target=job.target,
        operation=job.to_dict(),
    )


@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def get_status(req: func.HttpRequest) -> func.HttpResponse:
    service = service_from_environment()
    authorize(req.headers, "read", service.settings)
    return json_response({"targets": service.status()})


# The preflight writes probes and reads every target: callers (a retrying hook, a dashboard) that ask
# again within this many seconds get the same report rather than another run.
PREFLIGHT_REUSE_SECONDS = 30
_preflight_lock = threading.Lock()
_last_preflight: tuple[float, dict] | None = None


@bp.route(route="preflight", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def get_preflight(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Every check a first backup and restore depend on, with this app's own identity (the azd hook
    calls it after each deployment). Always 200: the verdict is the body's ``status``."""
    global _last_preflight
    service = service_from_environment()
    authorize(req.headers, "read", service.settings)
    with _preflight_lock:  # one run at a time per instance, its report served again for a while
        if _last_preflight is None or time.monotonic() - _last_preflight[0] >= PREFLIGHT_REUSE_SECONDS:
            _last_preflight = (time.monotonic(), service.preflight(thread_setup(context)).to_dict())
        report = _last_preflight[1]
    return json_response(report)


@lru_cache(maxsize=8)
def _openapi(origin: str | None, version: str = "3") -> bytes:
    """The document as this deployment serves it: its one server is this deployment (the repository's
    copy names a template), so a tool that imports it sends its key nowhere else. Version 2 is derived
    from the same file (for Logic Apps), never kept by hand."""
    document = json.loads(OPENAPI.read_text())
    if version == "2":
        return json.dumps(to_swagger2(document, origin), indent=2).encode()
    document["servers"] = [{"url": f"{origin or ''}/api", "description": "this deployment"}]
    return json.dumps(document, indent=2).encode()


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def get_openapi(req: func.HttpRequest) -> func.HttpResponse:
    """Authorized like every other route: one rule (each route needs a role) is one a reviewer can check.
    Tools that import the contract can take it from the repository (functions/openapi.json)."""
    settings = service_from_environment().settings
    authorize(req.headers, "read", settings)
    return func.HttpResponse(_openapi(settings.public_origin), status_code=200, mimetype="application/json")


@bp.route(route="swagger.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def get_swagger(req: func.HttpRequest) -> func.HttpResponse:
    """The same contract as OpenAPI 2.0, for Logic Apps' HTTP + Swagger action. The one route without
    a key: the designer fetches it from the browser, and a key in its URL would be stored in the
    workflow's definition. It holds only what the repository publishes (routes, shapes, error codes)."""
    # Not service_from_environment(): an anonymous caller must never see a settings problem.
    return func.HttpResponse(_openapi(public_origin_from_env(), "2"), status_code=200, mimetype="application/json")
