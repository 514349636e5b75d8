"""JSON and problem+json responses, request parsing and the absolute operation URL."""

from __future__ import annotations

import functools
import json
import logging
import uuid
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

import azure.functions as func

from mccf_backup import errors
from mccf_backup.redaction import redact

log = logging.getLogger("mccf_backup.http")
PROBLEM_TYPE = "urn:mccf-backup:problem"  # + ":<code>"; README lists every code under "Errors"
MAX_BODY_BYTES = 16 * 1024
STATUS_BY_CODE = {cls.code: cls.status for cls in errors.ALL_ERRORS}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, headers=headers or {}, mimetype="application/json"
    )


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> func.HttpResponse:
    body = {"type": f"{PROBLEM_TYPE}:{code}", "title": title, "status": status, "detail": redact(detail), "code": code}
    body.update({k: v for k, v in extra.items() if v is not None})
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/problem+json")


def error_response(err: errors.MccfBackupError) -> func.HttpResponse:
    return problem(err.status, err.code, err.title, err.message, target=err.target, field=err.field)


def handles_errors(function: Callable[[func.HttpRequest], func.HttpResponse]):
    """Every failure becomes problem+json with a stable code; never a stack trace, never a secret."""

    @functools.wraps(function)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return function(req)
        except errors.MccfBackupError as err:
            # A refused request is the caller's business (INFO); a failure on our side is a WARNING.
            level = logging.WARNING if err.status >= 500 else logging.INFO
            log.log(level, "%s %s -> %s: %s", req.method, urlsplit(req.url).path, err.code, redact(err.message))
            return error_response(err)
        except Exception:  # noqa: BLE001 - the last resort: log it, answer without details
            incident = str(uuid.uuid4())
            log.exception("unhandled error in %s %s (incident %s)", req.method, urlsplit(req.url).path, incident)
            return problem(
                500,
                "internal_error",
                "Internal error",
                f"An unexpected error occurred; the app's logs have it under incident {incident}.",
                incident=incident,
            )

    return wrapper


def json_body(req: func.HttpRequest, allowed: dict[str, type], required: tuple[str, ...]) -> dict[str, Any]:
    """Parse a JSON object body strictly: size, syntax, unknown fields, types, required fields."""
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise errors.InvalidRequest(f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.InvalidJson(f"The request body is not valid JSON: {exc.__class__.__name__}.") from exc
    if not isinstance(body, dict):
        raise errors.InvalidJson("The request body must be a JSON object.")
    for name, value in body.items():
        if name not in allowed:
            raise errors.InvalidRequest(
                f"Unknown field '{str(name)[:64]}'; allowed: {', '.join(sorted(allowed))}.", field=str(name)[:64]
            )
        if value is not None and not isinstance(value, allowed[name]):
            raise errors.InvalidRequest(f"Field '{name}' must be a {allowed[name].__name__}.", field=name)
    for name in required:
        if body.get(name) in (None, ""):
            raise errors.InvalidRequest(f"Field '{name}' is required.", field=name)
    return body


def operation_url(req: func.HttpRequest, job_id: str) -> str:
    """Absolute URL of the operation, keeping the caller's function key: Logic Apps polls it as is."""
    parts = urlsplit(req.url)
    url = f"{parts.scheme}://{parts.netloc}/api/operations/{job_id}"
    code = req.params.get("code")
    return f"{url}?{urlencode({'code': code})}" if code else url
