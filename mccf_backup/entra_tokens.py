"""Entra ID access tokens for the HTTP API, checked by the app itself: issuer, audience, signature
(the tenant's published keys), lifetime, and the app roles the token carries.

Why here and not App Service Authentication: Easy Auth's principal header is only trustworthy where
the platform strips what a caller sends and injects its own, and the app cannot tell from the inside
whether that happened. Flex Consumption lacked Easy Auth during its preview (its documentation said
unauthenticated callers were not blocked there), so a function-key holder could have forged any role.
A token checked in the app means the same on every plan, and a Logic App's managed identity gets such
a token without a browser.

Both token versions are accepted, as Entra ID issues them: v1.0 (issuer ``https://sts.windows.net/
{tenant}/``, audience ``api://{clientId}``; what managed identities and the Azure CLI get unless the
registration asks for v2) and v2.0 (issuer ``{authority}/{tenant}/v2.0``, audience the client ID).
The issuers and key locations come from the tenant's two OpenID metadata documents, never from the
token, so the check works in any cloud whose authority host is configured.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

import jwt
import requests

from . import logs
from .errors import TokenKeysUnavailable, Unauthenticated
from .inputs import GUID, caller_name

log = logs.logger("mccf_backup")

MAX_TOKEN_CHARS = 16 * 1024  # Entra ID tokens are a few kB; a group overage claim keeps them small
CLOCK_SKEW_SECONDS = 300  # Microsoft.Identity.Web's default tolerance for expiry and not-before
KEYS_MAX_AGE_SECONDS = 24 * 3600  # Microsoft's guidance: look at the keys at least daily
UNKNOWN_KEY_REFRESH_SECONDS = 60  # a token naming a new key refetches, but a flood of them cannot
FAILED_FETCH_BACKOFF_SECONDS = 10  # an unreachable authority is asked again after this, not per request
FETCH_WAIT_SECONDS = 15  # the longest a request waits for keys it has not got, and the longest a fetch reads
HTTP_TIMEOUT = (5, 10)
MAX_DOCUMENT_BYTES = 1024 * 1024  # Entra ID's metadata and key sets are a few kB
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
NAME_CLAIMS = ("preferred_username", "upn", "unique_name", "name", "appid", "azp", "oid")


@dataclass(frozen=True)
class TokenPolicy:
    """Which tokens the API takes: for this app registration, from this tenant, at this authority."""

    client_id: str
    tenant_id: str
    authority_host: str = "https://login.microsoftonline.com"

    @property
    def audiences(self) -> list[str]:
        return [self.client_id, f"api://{self.client_id}"]

    @property
    def metadata_urls(self) -> list[str]:
        base = f"{self.authority_host.rstrip('/')}/{self.tenant_id}"
        return [f"{base}/v2.0/.well-known/openid-configuration", f"{base}/.well-known/openid-configuration"]


@dataclass(frozen=True)
class Caller:
    name: str
    object_id: str
    roles: frozenset[str]


class SigningKeys:
    """The tenant's issuers and signing keys, fetched once and shared by every request of the instance.

    A request whose key is cached never waits for a fetch: one thread fetches at a time, behind its
    own lock, while the others read the keys they have. Concurrent first requests wait (bounded) on
    one fetch; an unknown ``kid`` (a key Entra ID rolled in) fetches again at most once a minute; the
    daily refresh happens on one request while the rest carry on; after a failed fetch the cached keys
    keep serving and the authority is not asked again for a while."""

    def __init__(self, policy: TokenPolicy, session: requests.Session | None = None) -> None:
        self._policy = policy
        self._session = session or requests.Session()
        self._state = threading.Lock()  # held only to read or swap what is cached
        self._fetching = threading.Lock()  # held for a whole fetch
        self._keys: dict[str, jwt.PyJWK] = {}
        self._issuers: list[str] = []
        self._fetched_at = float("-inf")
        self._failed_at = float("-inf")

    def issuers(self) -> list[str]:
        self._ensure(wanted_kid=None)
        with self._state:
            return list(self._issuers)

    def key(self, kid: str) -> jwt.PyJWK | None:
        self._ensure(wanted_kid=kid)
        with self._state:
            return self._keys.get(kid)

    def _ensure(self, wanted_kid: str | None) -> None:
        with self._state:
            now = time.monotonic()
            have = bool(self._keys)
            known = wanted_kid is None or wanted_kid in self._keys
            fresh = now - self._fetched_at < KEYS_MAX_AGE_SECONDS
            recently = now - self._fetched_at < UNKNOWN_KEY_REFRESH_SECONDS
            backing_off = now - self._failed_at < FAILED_FETCH_BACKOFF_SECONDS
            seen = (self._fetched_at, self._failed_at)
        if have and known and fresh:
            return
        if have and known:  # stale but usable: one request refreshes, nobody waits for it
            if not backing_off and self._fetching.acquire(blocking=False):
                try:
                    self._refresh(seen)
                finally:
                    self._fetching.release()
            return
        if (have and recently) or backing_off:  # an unknown kid just after a fetch, or the authority is down
            self._raise_if_empty()
            return
        # Only a cold instance waits for another's fetch; with keys cached, an unknown kid is refused at
        # once while a fetch runs, so made-up kids cannot park the instance's worker threads.
        acquired = self._fetching.acquire(timeout=FETCH_WAIT_SECONDS) if not have else self._fetching.acquire(False)
        if not acquired:
            self._raise_if_empty()
            return
        try:
            self._refresh(seen)
        finally:
            self._fetching.release()
        self._raise_if_empty()

    def _refresh(self, seen: tuple[float, float]) -> None:
        """Fetch, unless another thread tried while this one waited; failures keep what is cached."""
        with self._state:
            if (self._fetched_at, self._failed_at) != seen:
                return
        failure = None
        try:
            issuers, keys = self._fetch(time.monotonic() + FETCH_WAIT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - whatever the authority sends, the outcome is "not fetched"
            failure, issuers, keys = f"{type(exc).__name__}: {str(exc)[:200]}", [], {}
        now = time.monotonic()
        with self._state:
            if failure is None:
                self._issuers, self._keys, self._fetched_at = issuers, keys, now
            else:
                self._failed_at = now
        if failure is not None:
            log.warning("the tenant's token-signing keys were not fetched from AUTH_AUTHORITY_HOST (%s)", failure)

    def _raise_if_empty(self) -> None:
        with self._state:
            empty = not self._keys
        if empty:
            raise TokenKeysUnavailable(
                "The app cannot fetch its tenant's token-signing keys from the authority at AUTH_AUTHORITY_HOST; "
                "retry later, and check that the host is reachable and AUTH_TENANT_ID names the tenant."
            )

    def _fetch(self, deadline: float) -> tuple[list[str], dict[str, jwt.PyJWK]]:
        issuers: list[str] = []
        key_urls: list[str] = []
        authority = _origin(self._policy.authority_host)
        for url in self._policy.metadata_urls:
            document = self._get_json(url, deadline)
            issuers.append(str(document["issuer"]).replace("{tenantid}", self._policy.tenant_id))
            key_urls.append(str(document["jwks_uri"]))
        keys: dict[str, jwt.PyJWK] = {}
        for url in dict.fromkeys(key_urls):
            if authority is None or _origin(url) != authority:
                raise ValueError("the metadata names a key location off the authority's own https host")
            entries = self._get_json(url, deadline)["keys"]
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and entry.get("kty") == "RSA" and isinstance(entry.get("kid"), str):
                    try:
                        keys[entry["kid"]] = jwt.PyJWK(entry, algorithm="RS256")
                    except (jwt.PyJWTError, ValueError, TypeError):
                        continue  # one key the library cannot read does not cost the others
        if not keys:
            raise ValueError("the authority publishes no RSA signing key")
        return issuers, keys

    def _get_json(self, url: str, deadline: float) -> dict[str, Any]:
        """One document from the authority: no redirects, at most MAX_DOCUMENT_BYTES, and the whole
        fetch ends by ``deadline`` however slowly the bytes come (read1 returns what has arrived, so
        a trickle is measured byte by byte, not per 64 KiB)."""
        body = bytearray()
        with self._session.get(url, timeout=HTTP_TIMEOUT, stream=True, allow_redirects=False) as response:
            if response.status_code != 200:
                raise ValueError(f"the authority answered HTTP {response.status_code}")
            while chunk := response.raw.read1(64 * 1024, decode_content=True):
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES or time.monotonic() > deadline:
                    raise ValueError("the authority's document is too large or too slow")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("the authority answered with something other than a JSON object")
        return document


def _origin(url: str) -> tuple[str, str, int] | None:
    """https, host (any case) and port (443 when unsaid), to compare where keys come from."""
    try:
        parts = urlsplit(url)
        return (parts.scheme, (parts.hostname or "").lower(), parts.port or 443) if parts.scheme == "https" else None
    except ValueError:
        return None


_signing_keys: dict[TokenPolicy, SigningKeys] = {}
_signing_keys_lock = threading.Lock()


def signing_keys(policy: TokenPolicy) -> SigningKeys:
    """One cache per policy per process: every invocation on an instance shares the keys."""
    with _signing_keys_lock:
        keys = _signing_keys.get(policy)  # not setdefault: that would build a cache and a Session per request
        if keys is None:
            keys = _signing_keys[policy] = SigningKeys(policy)
        return keys


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token in ``Authorization: Bearer``, or a 401 that says how to send one."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "") or ""
    scheme, _, token = value.strip().partition(" ")
    if not value.strip():
        raise Unauthenticated(
            "This API needs an Entra ID access token: send 'Authorization: Bearer <token>', with a token for "
            "the audience in AUTH_CLIENT_ID (scope 'api://<AUTH_CLIENT_ID>/.default')."
        )
    token = token.strip()
    if scheme.lower() != "bearer" or len(token) > MAX_TOKEN_CHARS or not _JWT.fullmatch(token):
        raise Unauthenticated("The Authorization header must be 'Bearer' followed by an Entra ID access token (JWT).")
    return token


def caller_from(headers: Mapping[str, str], policy: TokenPolicy, keys: SigningKeys | None = None) -> Caller:
    """Who the token proves the caller is, with the API's app roles it holds; 401 for anything else."""
    token = bearer_token(headers)
    keys = keys or signing_keys(policy)
    header = _unverified_header(token)
    kid = header.get("kid") if isinstance(header, dict) else None
    if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(kid, str) or "crit" in header:
        raise Unauthenticated(
            "The access token is not an Entra ID token (it must be signed with RS256 and name its key)."
        )
    key = keys.key(kid)
    if key is None:
        raise Unauthenticated("The access token is signed by a key the tenant in AUTH_TENANT_ID does not publish.")
    claims = _verified_claims(token, key, policy, keys.issuers())
    if str(claims.get("tid", "")).lower() != policy.tenant_id.lower():
        raise Unauthenticated("The access token was issued for another tenant than AUTH_TENANT_ID.")
    object_id = str(claims.get("oid", ""))
    roles = claims.get("roles", [])
    roles = roles if isinstance(roles, list) else []
    name = next((claims[c] for c in NAME_CLAIMS if isinstance(claims.get(c), str) and claims[c]), "unknown caller")
    return Caller(
        name=caller_name(name),
        object_id=object_id if GUID.fullmatch(object_id) else "",
        roles=frozenset(r for r in roles if isinstance(r, str)),
    )


def _unverified_header(token: str) -> object:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return None
    except RecursionError:  # a deeply nested header: refused by the caller, outside this block
        return None


def _verified_claims(token: str, key: jwt.PyJWK, policy: TokenPolicy, issuers: list[str]) -> dict[str, Any]:
    problem = None
    try:
        return jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=policy.audiences,
            issuer=issuers,
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["exp", "iss", "aud", "tid"]},
        )
    except jwt.ExpiredSignatureError:
        problem = "The access token has expired; get a new one."
    except jwt.ImmatureSignatureError:
        problem = "The access token is not valid yet (nbf or iat in the future)."
    except jwt.InvalidAudienceError:
        problem = "The access token is for another audience; ask for 'api://<AUTH_CLIENT_ID>/.default'."
    except jwt.InvalidIssuerError:
        problem = "The access token was issued by another authority or tenant than AUTH_TENANT_ID's."
    except jwt.MissingRequiredClaimError:
        problem = "The access token lacks a claim every Entra ID access token has (exp, iss, aud, tid)."
    except Exception:  # noqa: BLE001 - whatever the library makes of a token (an infinite exp), it proves no one
        problem = "The access token's signature or format is invalid."
    raise Unauthenticated(problem)
