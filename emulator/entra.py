"""Entra ID as the issuer of tokens for the app's own HTTP API: OpenID metadata, signing keys, and the
client-credentials token endpoint (v2.0), for one tenant.

The app checks the bearer tokens its callers send (issuer, audience, signature, app roles) against the
metadata and keys this serves, exactly as it does against login.microsoftonline.com, and azure-identity's
ClientSecretCredential gets tokens here unchanged (``authority`` set to this endpoint). Two token shapes
reach the app, as in Azure: v1.0 tokens (issuer ``https://sts.windows.net/{tenant}/``, audience as
requested, ``api://{clientId}``) from the managed identity endpoint, which is what a Logic App's
identity sends, and v2.0 tokens (issuer ``{authority}/{tenant}/v2.0``, audience the client ID) from the
token endpoint, since the emulated API registration sets ``accessTokenAcceptedVersion`` to 2.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from jwt.algorithms import RSAAlgorithm
from werkzeug.wrappers import Request, Response

from .tokens import ISSUER, TENANT_ID, TOKEN_LIFETIME_SECONDS, TokenAuthority, key_id, normalize_audience

APP_ROLES = ("Backup.Read", "Backup.Operator", "Restore.Operator")
CLIENT_TOKEN_SECONDS = 3600


@dataclass
class Client:
    """A confidential client (an app registration with a secret), as an operator's tool would have."""

    client_id: str
    secret: str
    object_id: str


@dataclass
class Directory:
    """The tenant's app registrations that matter here: the API's, its callers, and who holds which of
    the API's app roles (by service principal object ID, as Entra ID keeps app role assignments)."""

    api_client_id: str
    clients: dict[str, Client] = field(default_factory=dict)
    assignments: dict[str, set[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def api_audiences(self) -> set[str]:
        return {normalize_audience(self.api_client_id), normalize_audience(f"api://{self.api_client_id}")}

    def register_client(self, roles: tuple[str, ...] | list[str] = ()) -> Client:
        client = Client(str(uuid.uuid4()), secrets.token_urlsafe(30), str(uuid.uuid4()))
        with self._lock:
            self.clients[client.client_id.lower()] = client
        self.assign(client.object_id, roles)
        return client

    def assign(self, object_id: str, roles: tuple[str, ...] | list[str]) -> None:
        """Give a principal app roles on the API (``New-MgServicePrincipalAppRoleAssignment``); [] takes them all."""
        unknown = sorted(set(roles) - set(APP_ROLES))
        if unknown:
            raise ValueError(f"The API registration defines no app role {unknown[0]!r}.")
        with self._lock:
            self.assignments[object_id.lower()] = set(roles)

    def roles_of(self, object_id: str, audience: str) -> list[str]:
        if normalize_audience(audience) not in self.api_audiences:
            return []
        with self._lock:
            return sorted(self.assignments.get(object_id.lower(), ()))

    def reset_assignments(self) -> None:
        with self._lock:
            self.assignments.clear()


def api_claims(
    tenant_base: str, api_client_id: str, client_id: str, object_id: str, roles: list[str], now: int | None = None
) -> dict:
    """A v2.0 access token's claims for the API, as Entra ID issues them to a client-credentials caller
    (``tenant_base`` is ``{authority}/{tenant}``); ``roles`` is left out when empty, as Entra does."""
    now = int(time.time()) if now is None else now
    claims = {
        "aud": api_client_id,
        "iss": f"{tenant_base}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + CLIENT_TOKEN_SECONDS,
        "azp": client_id,
        "azpacr": "1",
        "oid": object_id,
        "sub": object_id,
        "tid": TENANT_ID,
        "idtyp": "app",
        "uti": uuid.uuid4().hex,
        "ver": "2.0",
    }
    return {**claims, "roles": list(roles)} if roles else claims


def client_credential(authority: str, client_id: str, secret: str):
    """azure-identity's credential for an app registration of the emulated tenant, as a tool makes it
    for Entra ID (instance discovery off: it asks login.microsoftonline.com which hosts are Entra's)."""
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(TENANT_ID, client_id, secret, authority=authority, disable_instance_discovery=True)


def _json(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _oauth_error(status: int, error: str, aadsts: int, description: str) -> Response:
    return _json(
        {
            "error": error,
            "error_description": f"AADSTS{aadsts}: {description}",
            "error_codes": [aadsts],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        },
        status,
    )


def error_response(status: int, code: str, message: str) -> Response:
    """The shape the fault injector answers with for this service (an OAuth error)."""
    return _oauth_error(status, "temporarily_unavailable", 50000 + status, message)


class EntraService:
    """The paths of login.microsoftonline.com the app and azure-identity use, for ``TENANT_ID`` only."""

    def __init__(self, authority: TokenAuthority, directory: Directory, base_url: Callable[[], str]) -> None:
        self._authority = authority
        self._directory = directory
        self._base_url = base_url

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        return self.handle(Request(environ))(environ, start_response)

    def handle(self, request: Request) -> Response:
        tenant, _, rest = request.path.strip("/").partition("/")
        if tenant.lower() != TENANT_ID:
            return _oauth_error(400, "invalid_tenant", 90002, f"Tenant '{tenant[:40]}' not found. Check the tenant ID.")
        base = f"{self._base_url()}/{TENANT_ID}"
        routes = {
            ("GET", "v2.0/.well-known/openid-configuration"): lambda: _json(self._metadata(base, "2.0")),
            ("GET", ".well-known/openid-configuration"): lambda: _json(self._metadata(base, "1.0")),
            ("GET", "discovery/v2.0/keys"): lambda: _json(self._keys()),
            ("GET", "discovery/keys"): lambda: _json(self._keys()),
            ("POST", "oauth2/v2.0/token"): lambda: self._token(request, base),
        }
        route = routes.get((request.method, rest.rstrip("/")))
        if route is None:
            return _oauth_error(404, "invalid_request", 900561, f"No endpoint {request.method} {request.path}.")
        return route()

    def _metadata(self, base: str, version: str) -> dict:
        v2 = version == "2.0"
        return {
            "issuer": f"{base}/v2.0" if v2 else ISSUER,
            "jwks_uri": f"{base}/discovery/v2.0/keys" if v2 else f"{base}/discovery/keys",
            "token_endpoint": f"{base}/oauth2/v2.0/token" if v2 else f"{base}/oauth2/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize" if v2 else f"{base}/oauth2/authorize",
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "tenant_region_scope": "NA",
        }

    def _keys(self) -> dict:
        keys = []
        for public in self._authority.public_keys:
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
            kid = key_id(public)
            keys.append({"kty": "RSA", "use": "sig", "kid": kid, "x5t": kid, "n": jwk["n"], "e": jwk["e"]})
        return {"keys": keys}

    def _token(self, request: Request, base: str) -> Response:
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", 70003, "Only client_credentials is emulated.")
        client = self._directory.clients.get((form.get("client_id") or "").lower())
        if client is None:
            return _oauth_error(
                400, "unauthorized_client", 700016, "Application not found in the directory of the tenant."
            )
        if not secrets.compare_digest(form.get("client_secret") or "", client.secret):
            return _oauth_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        scopes = (form.get("scope") or "").split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return _oauth_error(400, "invalid_scope", 1002012, "The scope must be one resource's '/.default'.")
        resource = scopes[0].removesuffix("/.default")
        if normalize_audience(resource) not in self._directory.api_audiences:
            token, expires_on = self._authority.issue(resource, client.client_id, client.object_id)
            return _json(self._token_body(token, expires_on))
        roles = self._directory.roles_of(client.object_id, self._directory.api_client_id)
        claims = api_claims(base, self._directory.api_client_id, client.client_id, client.object_id, roles)
        return _json(self._token_body(self._authority.sign(claims), claims["exp"]))

    @staticmethod
    def _token_body(token: str, expires_on: int) -> dict:
        lifetime = max(0, min(expires_on - int(time.time()), TOKEN_LIFETIME_SECONDS))
        return {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}
