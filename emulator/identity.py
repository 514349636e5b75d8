"""Managed identity endpoint, App Service protocol (api-version 2019-08-01).

This is what ManagedIdentityCredential and DefaultAzureCredential call when
``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set, exactly as on App
Service and Azure Functions: plain http on loopback, the secret header
proving the caller runs inside the app's sandbox.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from werkzeug.wrappers import Request, Response

from .entra import Directory
from .tokens import TokenAuthority

API_VERSION = "2019-08-01"


@dataclass(frozen=True)
class Identity:
    client_id: str
    object_id: str
    kind: str  # "system" or "user"


def error_response(status: int, code: str, message: str) -> Response:
    body = {"statusCode": status, "message": message, "error": code, "correlationId": str(uuid.uuid4())}
    return Response(json.dumps(body), status=status, content_type="application/json")


class IdentityService:
    def __init__(
        self,
        authority: TokenAuthority,
        header_secret: str,
        system: Identity,
        user_assigned: list[Identity],
        directory: Directory | None = None,
    ) -> None:
        self._authority = authority
        self._directory = directory
        self._header_secret = header_secret
        self._system = system
        self._by_client_id = {i.client_id.lower(): i for i in user_assigned}
        self._by_client_id[system.client_id.lower()] = system

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        return self.handle(Request(environ))(environ, start_response)

    def handle(self, request: Request) -> Response:
        if request.method != "GET":
            return error_response(405, "invalid_request", "Only GET is supported.")
        if request.headers.get("X-IDENTITY-HEADER") != self._header_secret:
            return error_response(401, "invalid_request", "The X-IDENTITY-HEADER header is missing or wrong.")
        if request.args.get("api-version") != API_VERSION:
            return error_response(400, "invalid_request", f"api-version must be {API_VERSION}.")
        resource = request.args.get("resource", "")
        if not resource.startswith(("https://", "api://")):
            return error_response(
                400, "invalid_resource", "The 'resource' parameter must be an https:// or api:// resource URI."
            )
        identity = self._select(request)
        if identity is None:
            return error_response(
                400,
                "invalid_request",
                "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId.",
            )
        roles = self._directory.roles_of(identity.object_id, resource) if self._directory else []
        token, expires_on = self._authority.issue(
            resource, identity.client_id, identity.object_id, {"roles": roles} if roles else None
        )
        body = {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }
        return Response(json.dumps(body), status=200, content_type="application/json")

    def _select(self, request: Request) -> Identity | None:
        client_id = request.args.get("client_id") or request.args.get("principal_id")
        if request.args.get("mi_res_id"):
            return None  # resource-id selection is not emulated; say so rather than guess
        if client_id:
            return self._by_client_id.get(client_id.lower())
        return self._system
