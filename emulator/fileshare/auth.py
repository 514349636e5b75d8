"""Azure Storage request authorization for the File service: Shared Key, account SAS, service SAS.

Signatures are recomputed from the request exactly as the storage service
does (the string-to-sign formats of the Storage REST reference), so a
client that signs wrongly fails here as it would fail in Azure. Time
windows use the real clock, as the clients that mint SAS tokens do.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from werkzeug.wrappers import Request

from .store import StorageError

SHARED_KEY_CLOCK_SKEW = dt.timedelta(minutes=15)
_SHARED_KEY_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)
_ENCRYPTION_SCOPE_VERSION = "2020-12-06"


@dataclass(frozen=True)
class Operation:
    """What a request does, for the SAS checks: resource level and the permissions that allow it."""

    name: str
    level: str  # "s" service, "c" container (share), "o" object (directory or file)
    account_permissions: frozenset[str]
    service_permissions: frozenset[str]  # empty: not allowed with a service (share/file) SAS


def op(name: str, level: str, account: str, service: str = "") -> Operation:
    return Operation(name, level, frozenset(account), frozenset(service))


@dataclass(frozen=True)
class Target:
    account: str
    share: str | None
    path: str  # inside the share, '' for the share root


class AuthError(StorageError):
    pass


def _fail(status: int, code: str, message: str) -> AuthError:
    return AuthError(status, code, message)


def _sign(key: bytes, string_to_sign: str) -> str:
    return base64.b64encode(hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).digest()).decode()


def _matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


class StorageAuthorizer:
    def __init__(self, accounts: dict[str, bytes]) -> None:
        self._keys = accounts  # account name -> decoded account key
        # Added to the wall clock for SAS start/expiry only: lets a test make a SAS expire while an
        # operation that uses it is still running, without waiting out its lifetime.
        self.sas_clock_offset = dt.timedelta()

    def authorize(self, request: Request, target: Target, operation: Operation) -> str:
        """Return the auth scheme used ('SharedKey', 'AccountSAS', 'ServiceSAS') or raise AuthError."""
        key = self._keys.get(target.account)
        if key is None:
            raise _fail(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
        if "sig" in request.args:
            if "ss" in request.args or "srt" in request.args:
                self._account_sas(request, target, operation, key)
                return "AccountSAS"
            self._service_sas(request, target, operation, key)
            return "ServiceSAS"
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("SharedKey "):
            self._shared_key(request, target, key, authorization)
            return "SharedKey"
        if authorization.lower().startswith("bearer "):
            raise _fail(
                403,
                "AuthenticationFailed",
                "Bearer (OAuth) authorization of Azure Files REST calls is not emulated; use Shared Key or a SAS.",
            )
        raise _fail(
            401,
            "NoAuthenticationInformation",
            "Server failed to authenticate the request. Please refer to the information in the "
            "www-authenticate header.",
        )

    # --- Shared Key ---
    def _shared_key(self, request: Request, target: Target, key: bytes, authorization: str) -> None:
        account, _, signature = authorization[len("SharedKey ") :].partition(":")
        if account != target.account or not signature:
            raise _fail(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. "
                "The account in the Authorization header does not match the request.",
            )
        date_value = request.headers.get("x-ms-date") or request.headers.get("Date")
        if not date_value:
            raise _fail(403, "AuthenticationFailed", "Request date header not specified.")
        try:
            sent = dt.datetime.strptime(date_value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=dt.timezone.utc)
        except ValueError as exc:
            raise _fail(403, "AuthenticationFailed", "Request date header is not a valid HTTP date.") from exc
        if abs(dt.datetime.now(dt.timezone.utc) - sent) > SHARED_KEY_CLOCK_SKEW:
            raise _fail(
                403,
                "AuthenticationFailed",
                "Request date header too old or too far in the future (more than 15 minutes).",
            )
        if not _matches(_sign(key, shared_key_string_to_sign(request, target.account)), signature):
            raise _fail(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization header "
                "is formed correctly including the signature.",
            )

    # --- SAS ---
    def _common_sas_checks(self, request: Request, expected_sig: str) -> None:
        if not _matches(expected_sig, request.args.get("sig", "")):
            raise _fail(
                403, "AuthenticationFailed", "Server failed to authenticate the request. Signature did not match."
            )
        now = dt.datetime.now(dt.timezone.utc) + self.sas_clock_offset
        start = _parse_sas_time(request.args.get("st"))
        expiry = _parse_sas_time(request.args.get("se"))
        if expiry is None:
            raise _fail(403, "AuthenticationFailed", "Signed expiry time (se) is required.")
        if (start is not None and now < start) or now >= expiry:
            raise _fail(
                403,
                "AuthenticationFailed",
                f"Signature not valid in the specified time frame: Start [{request.args.get('st', '')}] - "
                f"Expiry [{request.args.get('se')}] - Current [{now.strftime('%a, %d %b %Y %H:%M:%S GMT')}]",
            )
        protocol = request.args.get("spr", "https,http")
        if protocol not in ("https", "https,http") or (protocol == "https" and request.scheme != "https"):
            raise _fail(
                403,
                "AuthorizationProtocolMismatch",
                "This request is not authorized to perform this operation using this protocol.",
            )
        if request.scheme != "https" and "http" not in protocol.split(","):
            raise _fail(
                403,
                "AuthorizationProtocolMismatch",
                "This request is not authorized to perform this operation using this protocol.",
            )
        allowed_ip = request.args.get("sip")
        if allowed_ip and not _ip_allowed(request.remote_addr or "", allowed_ip):
            raise _fail(
                403,
                "AuthorizationSourceIPMismatch",
                "This request is not authorized to perform this operation using this source IP.",
            )

    def _account_sas(self, request: Request, target: Target, operation: Operation, key: bytes) -> None:
        args = request.args
        for required in ("sv", "ss", "srt", "sp", "se"):
            if not args.get(required):
                raise _fail(403, "AuthenticationFailed", f"The account SAS is missing the '{required}' parameter.")
        fields = [
            target.account,
            args["sp"],
            args["ss"],
            args["srt"],
            args.get("st", ""),
            args["se"],
            args.get("sip", ""),
            args.get("spr", ""),
            args["sv"],
        ]
        if args["sv"] >= _ENCRYPTION_SCOPE_VERSION:
            fields.append(args.get("ses", ""))
        self._common_sas_checks(request, _sign(key, "\n".join(fields) + "\n"))
        if "f" not in args["ss"]:
            raise _fail(
                403,
                "AuthorizationServiceMismatch",
                "This request is not authorized to perform this operation using this service.",
            )
        if operation.level not in args["srt"]:
            raise _fail(
                403,
                "AuthorizationResourceTypeMismatch",
                "This request is not authorized to perform this operation using this resource type.",
            )
        if not operation.account_permissions & set(args["sp"]):
            raise _fail(
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            )

    def _service_sas(self, request: Request, target: Target, operation: Operation, key: bytes) -> None:
        args = request.args
        resource = args.get("sr")
        if resource not in ("s", "f") or not args.get("sv") or not args.get("sp"):
            raise _fail(403, "AuthenticationFailed", "The service SAS must carry sv, sr (s or f) and sp.")
        if args.get("si"):
            raise _fail(
                403,
                "AuthenticationFailed",
                "Stored access policies (si) are not emulated; sign the SAS with explicit fields.",
            )
        if target.share is None:
            raise _fail(
                403,
                "AuthorizationResourceTypeMismatch",
                "This request is not authorized to perform this operation using this resource type.",
            )
        canonical = f"/file/{target.account}/{target.share}"
        if resource == "f":
            canonical += "/" + target.path
        fields = [
            args["sp"],
            args.get("st", ""),
            args.get("se", ""),
            canonical,
            args.get("si", ""),
            args.get("sip", ""),
            args.get("spr", ""),
            args["sv"],
            args.get("rscc", ""),
            args.get("rscd", ""),
            args.get("rsce", ""),
            args.get("rscl", ""),
            args.get("rsct", ""),
        ]
        self._common_sas_checks(request, _sign(key, "\n".join(fields)))
        if not operation.service_permissions or (resource == "f" and operation.level != "o"):
            raise _fail(
                403,
                "AuthorizationResourceTypeMismatch",
                "This request is not authorized to perform this operation using this resource type.",
            )
        if not operation.service_permissions & set(args["sp"]):
            raise _fail(
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            )


def raw_headers(request: Request) -> list[tuple[str, str]]:
    """The headers exactly as sent. WSGI upper-cases names and werkzeug drops names with underscores
    (x-ms-meta-my_key is legal metadata in Azure), so the emulator's server keeps the raw list."""
    return request.environ.get("emulator.raw_headers") or list(request.headers.items())


def shared_key_string_to_sign(request: Request, account: str) -> str:
    """The Shared Key string-to-sign (version 2009-09-19 and later) for this request."""
    headers = {name.lower(): value for name, value in raw_headers(request)}
    values = []
    for name in _SHARED_KEY_HEADERS:
        value = headers.get(name, "")
        if name == "content-length" and value == "0":
            value = ""
        values.append(value)
    canonical_headers = "".join(
        f"{name}:{' '.join(headers[name].split())}\n" for name in sorted(h for h in headers if h.startswith("x-ms-"))
    )
    raw_path = request.environ.get("RAW_URI", request.path).split("?", 1)[0]
    resource = f"/{account}{raw_path}"
    for name in sorted({k.lower() for k in request.args.keys()}):
        joined = ",".join(sorted(v for k, vs in request.args.lists() if k.lower() == name for v in vs))
        resource += f"\n{name}:{joined}"
    return request.method + "\n" + "\n".join(values) + "\n" + canonical_headers + resource


def _parse_sas_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    raise _fail(403, "AuthenticationFailed", f"The SAS time '{value}' is not a valid ISO 8601 UTC time.")


def _ip_allowed(remote: str, allowed: str) -> bool:
    try:
        address = ipaddress.ip_address(remote)
        low, _, high = allowed.partition("-")
        return ipaddress.ip_address(low) <= address <= ipaddress.ip_address(high or low)
    except ValueError:
        return False
