"""One credential per process, so tokens are fetched once per audience and cached by azure-identity.

In Azure the app runs as its managed identity (AZURE_CLIENT_ID selects a user-assigned one). The
CLI runs where an operator is signed in, so it uses DefaultAzureCredential, which also finds a
managed identity when the CLI runs on an Azure host.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

REFRESH_MARGIN_SECONDS = 300
_lock = threading.Lock()
_credentials: dict[tuple[str, str | None], TokenCredential] = {}


class SingleFlightCredential:
    """One token request per scope at a time, shared by every thread of the process.

    azure-identity caches tokens, but when eight backup threads start together each misses the
    cache and asks the identity endpoint; this holds the others until the first token is back.
    """

    def __init__(self, inner: TokenCredential) -> None:
        self._inner = inner
        self._tokens: dict[tuple, AccessTokenInfo] = {}
        self._locks: dict[tuple, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock_for(self, key: tuple) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def get_token_info(self, *scopes: str, options: dict[str, Any] | None = None) -> AccessTokenInfo:
        key = (scopes, tuple(sorted((options or {}).items())))
        with self._lock_for(key):
            token = self._tokens.get(key)
            if token is None or token.expires_on - REFRESH_MARGIN_SECONDS <= time.time():
                if hasattr(self._inner, "get_token_info"):
                    token = self._inner.get_token_info(*scopes, options=options)
                else:
                    legacy = self._inner.get_token(*scopes, **(options or {}))
                    token = AccessTokenInfo(legacy.token, legacy.expires_on)
                self._tokens[key] = token
            return token

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        options = {k: v for k, v in {"claims": claims, "tenant_id": tenant_id, "enable_cae": enable_cae}.items() if v}
        info = self.get_token_info(*scopes, options=options or None)
        return AccessToken(info.token, info.expires_on)

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close:
            close()


def get_credential(client_id: str | None, *, interactive: bool = False) -> TokenCredential:
    key = ("cli" if interactive else "app", client_id)
    with _lock:
        credential = _credentials.get(key)
        if credential is None:
            if interactive:
                inner = DefaultAzureCredential(
                    managed_identity_client_id=client_id, exclude_interactive_browser_credential=True
                )
            else:
                inner = ManagedIdentityCredential(client_id=client_id)
            credential = _credentials[key] = SingleFlightCredential(inner)
        return credential


def reset_credentials() -> None:
    """Forget cached credentials (tests; a host that rotates the identity)."""
    with _lock:
        _credentials.clear()
