"""Tokens for the app's API, got as real callers get them: azure-identity against the emulator's Entra ID
(an operator's tool: ``emulator.api_token(*roles)``)."""

from __future__ import annotations

from azure.identity import ManagedIdentityCredential

from emulator import Emulator


def identity_token(emulator: Emulator, *roles: str) -> str:
    """A v1.0 token from a managed identity holding ``roles``, as a Logic App's identity sends it."""
    emulator.directory.assign(emulator.user_identity.object_id, list(roles))
    credential = ManagedIdentityCredential(client_id=emulator.user_identity.client_id)
    return credential.get_token(f"api://{emulator.directory.api_client_id}/.default").token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
