"""`make demo`: the manual Managed CCF backup procedure, automated, against the local emulator.

Until the Functions app lands (issue 3) this shows what the emulator gives it: a managed identity
token, the storage secret from Key Vault, a short-lived least-privilege SAS, an ARM backup polled to
completion, the ledger files in the new share, and a delete + restore of the instance.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from azure.core.pipeline import policies
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.polling.arm_polling import ARMPolling
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from azure.storage.fileshare import AccountSasPermissions, ResourceTypes, ShareServiceClient, generate_account_sas

from emulator import Emulator

API_VERSION = "2024-09-19-preview"
STATE_DIR = Path(".state/demo")


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def account_sas_url(connection_string: str, permission: str) -> str:
    """A File service SAS URL, valid 30 minutes, https only, with only the permissions asked for."""
    service = ShareServiceClient.from_connection_string(connection_string)
    sas = generate_account_sas(
        service.account_name,
        service.credential.account_key,
        ResourceTypes(container=True, object=True),
        AccountSasPermissions.from_string(permission),
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=30),
        protocol="https",
    )
    return f"{service.url.rstrip('/')}?{sas}"


def run_lro(client: ARMPipelineClient, path: str, body: dict) -> dict:
    request = HttpRequest("POST", f"{os.environ['ARM_ENDPOINT']}{path}?api-version={API_VERSION}", json=body)
    initial = client.send_request(request, _return_pipeline_response=True)
    initial.http_response.raise_for_status()
    poller = LROPoller(
        client,
        initial,
        lambda response: response.http_response.json(),
        ARMPolling(1, lro_options={"final-state-via": "location"}),
    )
    return poller.result()


def main() -> int:
    with Emulator(STATE_DIR, seed=True, operation_seconds=2) as emu:
        os.environ.update(emu.env)
        step(f"emulator up; settings in {STATE_DIR / 'emulator.env'}")
        credential = ManagedIdentityCredential()
        arm = ARMPipelineClient(
            base_url=emu.env["ARM_ENDPOINT"],
            policies=[
                policies.RequestIdPolicy(),
                policies.RetryPolicy(),
                ARMChallengeAuthenticationPolicy(credential, "https://management.azure.com/.default"),
            ],
        )
        vault = SecretClient(emu.env["KEY_VAULT_URL"], credential, verify_challenge_resource=False)
        step(f"reading storage secret '{emu.env['STORAGE_SECRET_NAME']}' from Key Vault with the managed identity")
        connection_string = vault.get_secret(emu.env["STORAGE_SECRET_NAME"]).value
        shares = ShareServiceClient.from_connection_string(connection_string)
        target = emu.env["MCCF_TARGETS"].split(",")[0]
        app = target.rsplit("/", 1)[1]
        step(f"backing up {app} (SAS: create+write on shares and files, 30 minutes)")
        before = {s.name for s in shares.list_shares(name_starts_with=app)}
        print("    ", run_lro(arm, f"{target}/backup", {"uri": account_sas_url(connection_string, "cw")})["message"])
        (share,) = {s.name for s in shares.list_shares(name_starts_with=app)} - before
        files = [f.name for f in shares.get_share_client(share).list_directories_and_files("ledger")]
        step(f"backup share {share}: ledger/ {', '.join(files)}")
        step(f"deleting {app}, then restoring it from {share} (SAS: read+list)")
        delete = arm.send_request(
            HttpRequest("DELETE", f"{emu.env['ARM_ENDPOINT']}{target}?api-version={API_VERSION}"),
            _return_pipeline_response=True,
        )
        LROPoller(arm, delete, lambda r: None, ARMPolling(1)).result()
        restored = run_lro(
            arm,
            f"{target}/restore",
            {"uri": account_sas_url(connection_string, "rl"), "fileShareName": share, "restoreRegion": "eastus"},
        )
        print("    ", restored["message"])
        state = arm.send_request(HttpRequest("GET", f"{emu.env['ARM_ENDPOINT']}{target}?api-version={API_VERSION}"))
        step(f"{app} is back: provisioningState={state.json()['properties']['provisioningState']}")
    step("done; `make emulator` keeps the emulator running for your own experiments")
    return 0


if __name__ == "__main__":
    sys.exit(main())
