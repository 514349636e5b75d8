"""Access tokens issued by the emulator's managed identity endpoint.

They are real signed JWTs (RS256, like Entra ID's) so that the services can
check what Azure checks: the signature, the expiry and, above all, the
audience. A token for Key Vault must not open ARM; a test proves it.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TENANT_ID = "72f988bf-0000-4000-8000-00000000e1e1"
ISSUER = f"https://sts.windows.net/{TENANT_ID}/"
TOKEN_LIFETIME_SECONDS = 24 * 3600  # managed identity tokens live about a day

# The resource IDs (audiences) of the services the emulator serves, as Entra ID spells them.
ARM_AUDIENCES = frozenset({"https://management.azure.com", "https://management.core.windows.net"})
VAULT_AUDIENCES = frozenset({"https://vault.azure.net"})


class TokenError(Exception):
    """A bearer token the service must refuse; ``code`` is the service's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Caller:
    client_id: str
    object_id: str
    audience: str


def normalize_audience(value: str) -> str:
    return value.rstrip("/").lower()


def key_id(key: rsa.RSAPublicKey) -> str:
    """Entra ID names a signing key by its certificate's SHA-1 thumbprint (``kid``, ``x5t``); the
    emulator has no certificate, so it names the key by the digest of its public key instead."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()  # noqa: S324 - a name


class TokenAuthority:
    """Signs every token the emulator's Entra ID issues. Like Entra ID it can roll its signing key; the
    keys it signed with before stay published (and accepted) so tokens already out keep working."""

    def __init__(self, key_path: Path) -> None:
        if key_path.exists():
            self._key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        else:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_path.parent.mkdir(parents=True, exist_ok=True)
            key_path.write_bytes(
                self._key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            key_path.chmod(0o600)
        self._public = self._key.public_key()
        self._retired: list[rsa.RSAPublicKey] = []

    @property
    def public_keys(self) -> list[rsa.RSAPublicKey]:
        return [self._public, *self._retired]

    def roll_key(self) -> str:
        """Sign from now on with a new key (kept in memory only); returns its ``kid``."""
        self._retired.insert(0, self._public)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public = self._key.public_key()
        return key_id(self._public)

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": key_id(self._public)})

    def issue(
        self, resource: str, client_id: str, object_id: str, extra: dict[str, Any] | None = None
    ) -> tuple[str, int]:
        """A v1.0 access token, as the managed identity endpoint gives (issuer sts.windows.net)."""
        now = int(time.time())
        expires_on = now + TOKEN_LIFETIME_SECONDS
        claims = {
            "aud": resource,
            "iss": ISSUER,
            "iat": now,
            "nbf": now - 60,
            "exp": expires_on,
            "appid": client_id,
            "azp": client_id,
            "oid": object_id,
            "sub": object_id,
            "tid": TENANT_ID,
            "idtyp": "app",
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
            **(extra or {}),
        }
        return self.sign(claims), expires_on

    def verify(self, authorization: str | None, audiences: frozenset[str]) -> Caller:
        """Check an ``Authorization`` header value; raise TokenError with ARM's codes."""
        if not authorization:
            raise TokenError("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError(
                "InvalidAuthenticationToken",
                "The access token is invalid: the 'Authorization' header must use the Bearer scheme.",
            )
        try:
            claims = self._decode(token.strip())
        except jwt.ExpiredSignatureError as exc:
            raise TokenError(
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            ) from exc
        except jwt.PyJWTError as exc:
            raise TokenError(
                "InvalidAuthenticationToken", "The access token is invalid (signature or format)."
            ) from exc
        if normalize_audience(str(claims["aud"])) not in {normalize_audience(a) for a in audiences}:
            raise TokenError(
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource '{claims['aud']}'. "
                f"It should exactly match with one of the allowed audiences {sorted(audiences)}.",
            )
        return Caller(
            client_id=str(claims.get("appid", "")),
            object_id=str(claims.get("oid", "")),
            audience=str(claims["aud"]),
        )

    def _decode(self, token: str) -> dict[str, Any]:
        wanted = jwt.get_unverified_header(token).get("kid")
        keys = [k for k in self.public_keys if key_id(k) == wanted] or [self._public]
        return jwt.decode(
            token, keys[0], algorithms=["RS256"], options={"verify_aud": False, "require": ["exp", "aud"]}, leeway=0
        )
