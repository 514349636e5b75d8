"""Key Vault secrets: get (latest or by version), set, list versions.

Includes the challenge flow the SDK relies on: an unauthenticated request
gets 401 with ``WWW-Authenticate: Bearer authorization=..., resource=...``,
the client fetches a token for that resource and retries. Tokens for any
other audience are refused, as Key Vault refuses them.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path

from werkzeug.wrappers import Request, Response

from .store import read_json, write_json
from .tokens import ISSUER, TENANT_ID, VAULT_AUDIENCES, TokenAuthority, TokenError

SECRET_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
API_VERSION = re.compile(r"(7\.\d+(-preview(\.\d+)?)?|\d{4}-\d{2}-\d{2}(-preview)?)")
MAX_SECRET_BYTES = 25 * 1024


def error_response(status: int, code: str, message: str, inner: str | None = None) -> Response:
    error: dict = {"code": code, "message": message}
    if inner:
        error["innerError"] = {"code": inner}
    return Response(
        json.dumps({"error": error}),
        status=status,
        content_type="application/json; charset=utf-8",
    )


class SecretStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._secrets: dict[str, list[dict]] = read_json(path, {})

    def set(
        self, name: str, value: str, content_type: str | None = None, tags: dict | None = None, enabled: bool = True
    ) -> dict:
        with self._lock:
            now = int(time.time())
            version = {
                "version": uuid.uuid4().hex,
                "value": value,
                "contentType": content_type,
                "tags": tags or None,
                "attributes": {
                    "enabled": enabled,
                    "created": now,
                    "updated": now,
                    "recoveryLevel": "Recoverable+Purgeable",
                    "recoverableDays": 90,
                },
            }
            self._secrets.setdefault(name.lower(), []).append(version | {"name": name})
            write_json(self._path, self._secrets)
            return version | {"name": name}

    def versions(self, name: str) -> list[dict]:
        with self._lock:
            return list(self._secrets.get(name.lower(), []))


class KeyVaultService:
    def __init__(self, store: SecretStore, authority: TokenAuthority, base_url) -> None:
        self._store = store
        self._authority = authority
        self._base_url = base_url

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        return self.handle(Request(environ))(environ, start_response)

    def _challenge(self, message: str, code: str = "Unauthorized") -> Response:
        response = error_response(401, code, message)
        response.headers["WWW-Authenticate"] = (
            f'Bearer authorization="{ISSUER.replace("sts.windows.net", "login.microsoftonline.com").rstrip("/")}", '
            'resource="https://vault.azure.net"'
        )
        return response

    def handle(self, request: Request) -> Response:
        try:
            self._authority.verify(request.headers.get("Authorization"), VAULT_AUDIENCES)
        except TokenError as err:
            if err.code == "AuthenticationFailed":
                return self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
            if err.code == "InvalidAuthenticationTokenAudience":
                return self._challenge(f"AKV10022: Invalid audience. {err.message}")
            if err.code == "ExpiredAuthenticationToken":
                return self._challenge("AKV10032: Token expired.")
            return self._challenge(f"AKV10000: {err.message}")
        api_version = request.args.get("api-version")
        if not api_version or not API_VERSION.fullmatch(api_version):
            return error_response(400, "BadParameter", "The specified version is not recognized (api-version).")
        parts = [p for p in request.path.split("/") if p]
        if not parts or parts[0] != "secrets":
            return error_response(404, "NotFound", "The requested resource was not found in this Key Vault.")
        if len(parts) == 2 and request.method == "PUT":
            return self._set(request, parts[1])
        if len(parts) in (2, 3) and request.method == "GET":
            if len(parts) == 3 and parts[2] == "versions":
                return self._list_versions(request, parts[1])
            return self._get(parts[1], parts[2] if len(parts) == 3 else "")
        return error_response(405, "MethodNotAllowed", "The operation is not supported.")

    def _bundle(self, name: str, version: dict, include_value: bool = True) -> dict:
        bundle = {"id": f"{self._base_url()}/secrets/{name}/{version['version']}", "attributes": version["attributes"]}
        if include_value:
            bundle["value"] = version["value"]
        if version.get("contentType"):
            bundle["contentType"] = version["contentType"]
        if version.get("tags"):
            bundle["tags"] = version["tags"]
        return bundle

    def _not_found(self, name: str, version: str = "") -> Response:
        return error_response(
            404,
            "SecretNotFound",
            f"A secret with (name/id) {name}{'/' + version if version else ''} was not found in this key vault. "
            "If you recently deleted this secret you may be able to recover it using the correct recovery command. "
            "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
        )

    def _get(self, name: str, version: str) -> Response:
        versions = self._store.versions(name)
        if version:
            chosen = next((v for v in versions if v["version"] == version), None)
        else:
            chosen = versions[-1] if versions else None  # the current version, enabled or not
        if chosen is None:
            return self._not_found(name, version)
        if not chosen["attributes"]["enabled"]:
            return error_response(
                403, "Forbidden", "Operation get is not allowed on a disabled secret.", inner="SecretDisabled"
            )
        return Response(
            json.dumps(self._bundle(chosen["name"], chosen)), content_type="application/json; charset=utf-8"
        )

    def _set(self, request: Request, name: str) -> Response:
        if not SECRET_NAME.fullmatch(name):
            return error_response(400, "BadParameter", "The secret name must match ^[0-9a-zA-Z-]+$.")
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError:
            return error_response(400, "BadParameter", "The request body is not valid JSON.")
        value = body.get("value")
        if not isinstance(value, str):
            return error_response(400, "BadParameter", "Property 'value' is required and must be a string.")
        if len(value.encode()) > MAX_SECRET_BYTES:
            return error_response(400, "BadParameter", "Secret value exceeds 25 KB.")
        attributes = body.get("attributes") or {}
        version = self._store.set(
            name, value, body.get("contentType"), body.get("tags"), attributes.get("enabled", True)
        )
        return Response(json.dumps(self._bundle(name, version)), content_type="application/json; charset=utf-8")

    def _list_versions(self, request: Request, name: str) -> Response:
        versions = self._store.versions(name)
        if not versions:
            return self._not_found(name)
        items = [self._bundle(v["name"], v, include_value=False) for v in versions]
        return Response(json.dumps({"value": items, "nextLink": None}), content_type="application/json; charset=utf-8")


__all__ = ["KeyVaultService", "SecretStore", "TENANT_ID"]
