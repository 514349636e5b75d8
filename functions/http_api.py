"""HTTP API for internal tools and Logic Apps (asynchronous request-reply: 202 + Location)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import azure.functions as func

from mccf_backup import errors

if TYPE_CHECKING:
    from mccf_backup.jobs import Job
    from mccf_backup.service import BackupService

from .engine import authorize, new_job_id, service_from_environment
from .http_helpers import STATUS_BY_CODE, handles_errors, json_body, json_response, operation_url, problem

bp = func.Blueprint()
OPENAPI = Path(__file__).with_name("openapi.json")
JOB_ID = re.compile(r"^\d{13}[0-9a-f]{8}$")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
MIN_RETRY_AFTER, MAX_RETRY_AFTER = 1, 60


def _accepted(req: func.HttpRequest, job: Job) -> func.HttpResponse:
    location = operation_url(req, job.id)
    retry_after = str(math.ceil(min(MAX_RETRY_AFTER, max(MIN_RETRY_AFTER, job.retry_after))))
    return json_response(
        {**job.to_dict(), "statusUrl": location}, 202, {"Location": location, "Retry-After": retry_after}
    )


def _start_once(
    req: func.HttpRequest,
    service: BackupService,
    route: str,
    body: dict,
    running: Callable[[], Job | None],
    start: Callable[[str], Job],
) -> func.HttpResponse:
    """Idempotency-Key and single flight around starting a long operation.

    The same key with the same body returns the first request's operation; with another body, 409.
    A backup asked for while one runs returns the running one (``running`` decides); then start.
    """
    key = req.headers.get("Idempotency-Key")
    job_id = new_job_id()
    scoped = body_hash = None
    if key is not None:
        if not IDEMPOTENCY_KEY.match(key):
            raise errors.InvalidRequest(
                "Idempotency-Key must be 1-255 visible ASCII characters.", field="Idempotency-Key"
            )
        scoped = f"{route}:{key}"
        body_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        first = service.jobs.claim_idempotency_key(scoped, body_hash, job_id)
        if first is not None:
            first_job, first_hash = first
            if first_hash != body_hash:
                raise errors.IdempotencyKeyReused(
                    "This Idempotency-Key was already used with a different request body; use a new key.",
                    field="Idempotency-Key",
                )
            try:
                return _accepted(req, service.jobs.get(first_job))
            except errors.OperationNotFound as exc:
                raise errors.OperationInProgress(
                    "The first request with this Idempotency-Key is still starting; retry in a moment."
                ) from exc
    existing = running()
    if existing is not None:
        if scoped:
            service.jobs.rebind_idempotency_key(scoped, body_hash, existing.id)
        return _accepted(req, existing)
    try:
        return _accepted(req, start(job_id))
    except errors.MccfBackupError:
        if scoped:
            try:
                service.jobs.get(job_id)
            except errors.OperationNotFound:
                service.jobs.release_idempotency_key(scoped)  # refused before any job: judge a retry afresh
        raise


@bp.route(route="backups", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def start_backup(req: func.HttpRequest) -> func.HttpResponse:
    service = service_from_environment()
    who = authorize(req.headers, "backup", service.settings)
    body = json_body(req, {"target": str}, required=("target",))
    target = service.targets.resolve(body["target"])
    return _start_once(
        req,
        service,
        "backups",
        body,
        running=lambda: service.running_job(target, ("backup",)),
        start=lambda job_id: service.start_backup(target.resource_id, "http", who, job_id=job_id)[0],
    )


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
    args = (body["target"], body.get("share"), body.get("restoreRegion"))
    replace = {"replace": bool(body.get("replace")), "confirm": body.get("confirm")}
    if body.get("dryRun"):
        return json_response(service.check_restore(*args, **replace).to_dict())
    target = service.targets.resolve(body["target"])

    def refuse_while_running() -> None:
        running = service.running_job(target, ("restore", "delete_instance"))
        if running is not None:
            raise errors.OperationInProgress(
                f"A restore of '{target.name}' is already running (operation {running.id}); poll it instead.",
                target=target.resource_id,
            )

    return _start_once(
        req,
        service,
        "restores",
        body,
        running=refuse_while_running,
        start=lambda job_id: service.start_restore(*args, "http", who, **replace, job_id=job_id)[0],
    )


@bp.route(route="operations/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
def get_operation(req: func.HttpRequest) -> func.HttpResponse:
    job_id = req.route_params.get("id", "")
    if not JOB_ID.match(job_id):
        raise errors.OperationNotFound(f"'{job_id[:64]}' is not an operation id.")
    service = service_from_environment()
    authorize(req.headers, "read", service.settings)
    job = service.refresh(job_id)
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
