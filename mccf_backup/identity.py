"""One credential per process, so tokens are fetched once per audience and cached by azure-identity.

In Azure the app runs as its managed identity (AZURE_CLIENT_ID selects a user-assigned one). The
CLI runs where an operator is signed in, so it uses DefaultAzureCredential, which also finds a
managed identity when the CLI runs on an Azure host.
"""

from __future__ import annotations

import threading

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

_lock = threading.Lock()
_credentials: dict[tuple[str, str | None], TokenCredential] = {}


def get_credential(client_id: str | None, *, interactive: bool = False) -> TokenCredential:
    key = ("cli" if interactive else "app", client_id)
    with _lock:
        credential = _credentials.get(key)
        if credential is None:
            if interactive:
                credential = DefaultAzureCredential(
                    managed_identity_client_id=client_id, exclude_interactive_browser_credential=True
                )
            else:
                credential = ManagedIdentityCredential(client_id=client_id)
            _credentials[key] = credential
        return credential


def reset_credentials() -> None:
    """Forget cached credentials (tests; a host that rotates the identity)."""
    with _lock:
        _credentials.clear()
