"""JSON and problem+json responses, request parsing and the absolute operation URL."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import uuid
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

import azure.functions as func

from mccf_backup import errors, logs
from mccf_backup.redaction import redact

log = logs.logger("mccf_backup.http")
PROBLEM_TYPE = "urn:mccf-backup:problem"  # + ":<code>"; docs/api.md lists every code under "Errors"
MAX_BODY_BYTES = 16 * 1024
FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
STATUS_BY_CODE = {cls.code: cls.status for cls in errors.ALL_ERRORS}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, headers=headers or {}, mimetype="application/json"
    )


def problem(
    status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> func.HttpResponse:
    body = {"type": f"{PROBLEM_TYPE}:{code}", "title": title, "status": status, "detail": redact(detail), "code": code}
    body.update({k: v for k, v in extra.items() if v is not None})
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, headers=headers, mimetype="application/problem+json"
    )


def error_response(err: errors.MccfBackupError) -> func.HttpResponse:
    # RFC 6750: a 401 names the scheme the caller must use.
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return problem(err.status, err.code, err.title, err.message, headers, target=err.target, field=err.field)


def _told_to_anyone(err: errors.MccfBackupError) -> errors.MccfBackupError:
    """With Entra ID guarding the API, settings that do not load are told to no caller: no token can
    be checked then, and the list names targets and settings. The logs and the preflight have it."""
    if isinstance(err, errors.SettingsInvalid) and os.environ.get("AUTH_CLIENT_ID", "").strip():
        return errors.SettingsInvalid(
            "The app's settings are invalid; its logs (and `mccf-backup preflight` run with them) list what to fix."
        )
    return err


def handles_errors(function: Callable[..., func.HttpResponse]):
    """Every failure becomes problem+json with a stable code; never a stack trace, never a secret.

    The request's path and the error's message are logged as JSON strings: both can carry what the
    caller sent, and a JSON string is one line whatever it holds.
    """

    @functools.wraps(function)  # the worker reads the bindings (req, context) through __wrapped__
    def wrapper(req: func.HttpRequest, **bindings) -> func.HttpResponse:
        path = json.dumps(urlsplit(req.url).path[:256])
        try:
            return function(req, **bindings)
        except errors.MccfBackupError as err:
            # A refused request is the caller's business (INFO); a failure on our side is a WARNING.
            level = logging.WARNING if err.status >= 500 else logging.INFO
            log.log(level, "%s %s -> %s: %s", req.method, path, err.code, json.dumps(redact(err.message)))
            return error_response(_told_to_anyone(err))
        except Exception:  # noqa: BLE001 - the last resort: log it, answer without details
            incident = str(uuid.uuid4())
            log.exception("unhandled error in %s %s (incident %s)", req.method, path, incident)
            return problem(
                500,
                "internal_error",
                "Internal error",
                f"An unexpected error occurred; the app's logs have it under incident {incident}.",
                incident=incident,
            )

    return wrapper


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise errors.InvalidJson("The request body names a field twice.")
    return dict(pairs)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


_TOO_DEEP = object()


def json_body(req: func.HttpRequest, allowed: dict[str, type], required: tuple[str, ...]) -> dict[str, Any]:
    """Parse a JSON object body strictly: media type, size, syntax, duplicate, unknown and missing fields, types.

    Messages name the field, never echo a value the caller sent.
    """
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise errors.InvalidRequest(f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    if raw.strip() and not _is_json(req.headers.get("Content-Type") or ""):
        raise errors.UnsupportedMediaType("Send the body as JSON, with Content-Type: application/json.")
    try:
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.InvalidJson(f"The request body is not valid JSON: {exc.__class__.__name__}.") from exc
    except ValueError as exc:  # an integer longer than Python converts (4,300 digits)
        raise errors.InvalidJson("The request body holds a number longer than any request of this API.") from exc
    except RecursionError:  # '[[[[...' deeper than the parser goes: refused below, outside this block,
        body = _TOO_DEEP  # so no exception keeps the parser's thousands of frames alive as its context
    if body is _TOO_DEEP:
        raise errors.InvalidJson("The request body nests deeper than any request of this API.")
    if not isinstance(body, dict):
        raise errors.InvalidJson("The request body must be a JSON object.")
    for name, value in body.items():
        if name not in allowed:
            raise errors.InvalidRequest(
                f"Unknown field; allowed: {', '.join(sorted(allowed))}.",
                field=name if FIELD_NAME.fullmatch(name) else "body",  # a plain name helps; anything else is data
            )
        if value is not None and not isinstance(value, allowed[name]):
            raise errors.InvalidRequest(f"Field '{name}' must be a {allowed[name].__name__}.", field=name)
    for name in required:
        if body.get(name) in (None, ""):
            raise errors.InvalidRequest(f"Field '{name}' is required.", field=name)
    return body


def operation_url(origin: str | None, job_id: str, code: str | None) -> str:
    """The operation's URL, from the deployment's own origin (never the request's Host header), keeping
    the caller's function key, because Logic Apps polls the Location exactly as given. Without a known
    origin it is the path alone, which HTTP allows and clients resolve against the URL they called."""
    url = f"{origin or ''}/api/operations/{job_id}"
    return f"{url}?{urlencode({'code': code})}" if code else url
