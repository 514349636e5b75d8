"""HTTP API for internal tools and Logic Apps (asynchronous request-reply: 202 + Location)."""

from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import azure.functions as func

from mccf_backup import errors

if TYPE_CHECKING:
    from mccf_backup.jobs import Job

from .engine import authorize, restore_request, service_from_environment
from .http_helpers import STATUS_BY_CODE, handles_errors, json_body, json_response, operation_url, problem

bp = func.Blueprint()
OPENAPI = Path(__file__).with_name("openapi.json")
JOB_ID = re.compile(r"\d{13}[0-9a-f]{8}")
MIN_RETRY_AFTER, MAX_RETRY_AFTER = 1, 60


def _accepted(req: func.HttpRequest, job: Job) -> func.HttpResponse:
    location = operation_url(req, job.id)
    retry_after = str(math.ceil(min(MAX_RETRY_AFTER, max(MIN_RETRY_AFTER, job.seconds_until_due()))))
    return json_response(
        {**job.to_dict(), "statusUrl": location}, 202, {"Location": location, "Retry-After": retry_after}
    )


@bp.route(route="backups", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def start_backup(req: func.HttpRequest) -> func.HttpResponse:
    service = service_from_environment()
    who = authorize(req.headers, "backup", service.settings)
    body = json_body(req, {"target": str}, required=("target",))
    job = service.start_backup(body["target"], "http", who, idempotency_key=req.headers.get("Idempotency-Key"))
    return _accepted(req, job)


@bp.route(route="backups", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def list_backups(req: func.HttpRequest) -> func.HttpResponse:
    service = service_from_environment()
    authorize(req.headers, "read", service.settings)
    reference = req.params.get("target")
    if not reference:
        raise errors.InvalidRequest("Query parameter 'target' (app name or resource ID) is required.", field="target")
    target, backups = service.list_backups(reference)
    return json_response({"target": target.resource_id, "backups": [b.to_dict() for b in backups]})


@bp.route(route="backups/{share}/verify", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def verify_backup(req: func.HttpRequest) -> func.HttpResponse:
    service = service_from_environment()
    who = authorize(req.headers, "backup", service.settings)
    body = json_body(req, {"target": str}, required=("target",))
    job = service.request_verify(body["target"], req.route_params.get("share", ""), "http", who)
    return _accepted(req, job)


@bp.route(route="restores", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def start_restore(req: func.HttpRequest) -> func.HttpResponse:
    service = service_from_environment()
    who = authorize(req.headers, "restore", service.settings)
    body = json_body(
        req,
        {"target": str, "share": str, "restoreRegion": str, "dryRun": bool, "replace": bool, "confirm": str},
        required=("target",),
    )
    request = restore_request(
        target=body["target"],
        share=body.get("share"),
        region=body.get("restoreRegion"),
        replace=bool(body.get("replace")),
        confirm=body.get("confirm"),
        trigger="http",
        caller=who,
    )
    if body.get("dryRun"):
        return json_response(service.check_restore(request).to_dict())
    return _accepted(req, service.start_restore(request, idempotency_key=req.headers.get("Idempotency-Key")))


@bp.route(route="operations/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def get_operation(req: func.HttpRequest) -> func.HttpResponse:
    job_id = req.route_params.get("id", "")
    if not JOB_ID.fullmatch(job_id):
        raise errors.OperationNotFound(f"'{job_id[:64]}' is not an operation id.")
    service = service_from_environment()
    authorize(req.headers, "read", service.settings)
    job = service.poll(job_id)
    if not job.done:
        return _accepted(req, job)
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


@cache
def _openapi() -> bytes:
    return OPENAPI.read_bytes()


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def get_openapi(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(_openapi(), status_code=200, mimetype="application/json")
