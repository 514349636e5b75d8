"""The backup storage account: its secret from Key Vault, and a fresh least-privilege SAS per operation.

The secret holds either a storage connection string with the account key (preferred: the app mints
a new short-lived SAS for every operation) or a File service SAS URL (then the app checks, before
each use, that it has not expired and grants what the operation needs, and refuses clearly if not).

SAS lifetime: the Managed CCF service writes (backup) or reads (restore) the share for as long as
its operation runs, and the app stops waiting after BACKUP_OPERATION_TIMEOUT_MINUTES; so the SAS
lives exactly that long plus five minutes, and starts five minutes in the past, both margins for
clock skew between this app and Azure Storage. It is https only and scoped to the File service.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient
from azure.storage.fileshare import AccountSasPermissions, ResourceTypes, ShareServiceClient, generate_account_sas

from .errors import AuthenticationFailed, AzureRequestFailed, PermissionDenied, SasUnusable, SecretNotFound
from .errors import StorageSecretInvalid
from .redaction import redact

CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Access:
    """What one kind of operation needs from an account SAS."""

    resource_types: str  # s service, c container (share), o object (directory, file)
    permissions: str


# The Managed CCF service creates the share and writes ledger files into it: create + write, no read.
BACKUP = Access("co", "cw")
# Restore reads the share's directories and files. Account-wide, though one share would do: the restore
# API takes the File service URL and the share name apart, and nothing Microsoft publishes says it
# accepts a share SAS (docs/security.md has the reasoning and the risk).
RESTORE = Access("co", "rl")
# The catalog lists shares, reads their metadata and tags them.
CATALOG = Access("sc", "lrw")
# Retention deletes shares (with the account key, or a stored SAS that allows it).
PRUNE = Access("c", "d")


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class StorageConfig:
    account_name: str
    file_endpoint: str  # https://<account>.file.core.windows.net (no trailing slash)
    account_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_secret(cls, value: str, secret_name: str) -> "StorageConfig":
        text = (value or "").strip()
        if text.lower().startswith("https://") and "sig=" in text:
            return cls._from_sas_url(text, secret_name)
        fields = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
        if "AccountName" in fields and "AccountKey" in fields:
            if fields.get("DefaultEndpointsProtocol", "https").lower() != "https":
                raise StorageSecretInvalid(f"The connection string in secret '{secret_name}' is not https.")
            endpoint = fields.get("FileEndpoint") or (
                f"https://{fields['AccountName']}.file.{fields.get('EndpointSuffix', 'core.windows.net')}"
            )
            if not endpoint.lower().startswith("https://"):
                raise StorageSecretInvalid(f"The FileEndpoint in secret '{secret_name}' is not https.")
            return cls(fields["AccountName"], endpoint.rstrip("/"), account_key=fields["AccountKey"])
        raise StorageSecretInvalid(
            f"Secret '{secret_name}' holds neither a storage connection string with AccountName and AccountKey "
            "nor a File service SAS URL (https://<account>.file.core.windows.net/?sv=...&sig=...)."
        )

    @classmethod
    def _from_sas_url(cls, url: str, secret_name: str) -> "StorageConfig":
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        host = parts.hostname or ""
        if ".file." in host:
            account, path = host.split(".file.", 1)[0], ""
        elif segments:  # path-style endpoint (emulators): https://host:port/<account>
            account, path = segments[0], "/" + segments[0]
        else:
            raise StorageSecretInvalid(f"The SAS URL in secret '{secret_name}' does not name a storage account.")
        if len(segments) > (1 if path else 0):
            raise StorageSecretInvalid(
                f"The SAS URL in secret '{secret_name}' points at a share or file; it must be the account's File "
                "service URL with an account SAS."
            )
        return cls(account, f"{parts.scheme}://{parts.netloc}{path}", sas_token=parts.query)

    # --- SAS per operation ---
    def sas_url(self, access: Access, lifetime: dt.timedelta) -> str:
        """A File service SAS URL that can do ``access`` for ``lifetime``, minted or checked."""
        if self.account_key is not None:
            now = dt.datetime.now(dt.timezone.utc)
            token = generate_account_sas(
                self.account_name,
                self.account_key,
                ResourceTypes(
                    service="s" in access.resource_types,
                    container="c" in access.resource_types,
                    object="o" in access.resource_types,
                ),
                AccountSasPermissions.from_string(access.permissions),
                expiry=now + lifetime + CLOCK_SKEW,
                start=now - CLOCK_SKEW,
                protocol="https",
            )
            return f"{self.file_endpoint}?{token}"
        self.check_sas(access, lifetime)
        return f"{self.file_endpoint}?{self.sas_token}"

    def check_sas(self, access: Access, lifetime: dt.timedelta) -> None:
        """Refuse, saying what is missing, a stored SAS that cannot do ``access`` for ``lifetime``."""
        query = {k: v[0] for k, v in parse_qs(self.sas_token or "").items()}
        problems = []
        if "sr" in query and "ss" not in query:
            problems.append("it is a share or file SAS; an account SAS (ss=f) is needed")
        if "f" not in query.get("ss", ""):
            problems.append("it does not grant the File service (ss must include f)")
        missing_types = set(access.resource_types) - set(query.get("srt", ""))
        if missing_types:
            problems.append(f"resource types '{''.join(sorted(missing_types))}' are missing from srt")
        missing_permissions = set(access.permissions) - set(query.get("sp", ""))
        if missing_permissions:
            problems.append(f"permissions '{''.join(sorted(missing_permissions))}' are missing from sp")
        if query.get("spr", "https") not in ("https", "https,http"):
            problems.append("its protocol (spr) does not allow https")
        expiry = _parse_time(query.get("se", ""))
        needed = dt.datetime.now(dt.timezone.utc) + lifetime
        if expiry is None:
            problems.append("it has no valid expiry (se)")
        elif expiry < needed:
            problems.append(
                f"it expires at {expiry:%Y-%m-%dT%H:%MZ}, before the operation can have finished ({needed:%Y-%m-%dT%H:%MZ})"
            )
        if problems:
            raise SasUnusable(
                "The SAS URL in the storage secret cannot be used: "
                + "; ".join(problems)
                + ". Store a fresh account SAS, or (better) the account's connection string, in the secret."
            )

    def sas_expiry(self) -> dt.datetime | None:
        """When the stored SAS stops working (None for a connection string, or an unreadable expiry)."""
        return _parse_time({k: v[0] for k, v in parse_qs(self.sas_token or "").items()}.get("se", ""))

    def service_client(self, **kwargs) -> ShareServiceClient:
        """A client for catalog work (list, read and tag shares): the account key, or the stored SAS."""
        if self.account_key is not None:
            return ShareServiceClient(
                self.file_endpoint,
                credential={"account_name": self.account_name, "account_key": self.account_key},
                **kwargs,
            )
        self.check_sas(CATALOG, dt.timedelta(minutes=5))
        return ShareServiceClient(self.file_endpoint, credential=self.sas_token, **kwargs)


def _parse_time(value: str) -> dt.datetime | None:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    return None


def load_storage_config(key_vault_url: str, secret_name: str, credential: TokenCredential) -> StorageConfig:
    """Read the storage secret from Key Vault (once per run) and parse it."""
    # Key Vault's SDK checks that the vault's host ends with the challenge resource (vault.azure.net).
    # A loopback vault (the local emulator) cannot; for loopback only, that check is switched off.
    client = SecretClient(key_vault_url, credential, verify_challenge_resource=not is_loopback(key_vault_url))
    try:
        value = client.get_secret(secret_name).value
    except ResourceNotFoundError as exc:
        raise SecretNotFound(
            f"Secret '{secret_name}' was not found in Key Vault {key_vault_url}. Create it with the backup storage "
            f"account's connection string (az keyvault secret set --vault-name <vault> --name {secret_name} "
            "--value <connection string>), or fix STORAGE_SECRET_NAME."
        ) from exc
    except ClientAuthenticationError as exc:
        raise AuthenticationFailed(
            f"Could not get a token for Key Vault {key_vault_url}: {redact(str(exc).splitlines()[0])}. "
            "Check that the app's managed identity exists (and AZURE_CLIENT_ID, for a user-assigned one)."
        ) from exc
    except HttpResponseError as exc:
        if exc.status_code == 403 and "disabled" in str(exc.message or exc).lower():
            raise SecretNotFound(
                f"The current version of secret '{secret_name}' in Key Vault {key_vault_url} is disabled. Enable it "
                f"(az keyvault secret set-attributes --vault-name <vault> --name {secret_name} --enabled true) or "
                "store a new version."
            ) from exc
        if exc.status_code == 403:
            raise PermissionDenied(
                f"The app's identity may not read secret '{secret_name}' in Key Vault {key_vault_url}: give it "
                "the 'Key Vault Secrets User' role on the vault."
            ) from exc
        raise AzureRequestFailed(
            f"Key Vault {key_vault_url} answered {exc.status_code} reading secret '{secret_name}': "
            f"{redact(exc.reason or '')}. Retry later; if it persists, check the vault's health."
        ) from exc
    if not value:
        raise StorageSecretInvalid(f"Secret '{secret_name}' in Key Vault {key_vault_url} is empty.")
    return StorageConfig.from_secret(value, secret_name)
