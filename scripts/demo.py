"""`make demo`: the whole product against the local emulator and Azurite, end to end.

Starts the emulator (seeded) and Azurite, serves the Functions app through the dev server (its
queue functions run beside it, as ``func start`` runs them), runs the scheduled backup through the
timer function (which starts every backup and returns; the operations queue follows them), shows
the API refusing callers without an Entra ID token or without the role (the emulator is the token
issuer; callers get tokens through azure-identity as in Azure), an on-demand backup over HTTP
polled exactly as Logic Apps polls, lists the catalog, deletes one instance, restores it over HTTP
from its newest backup, shows status and job history, and stops everything it started.
"""

from __future__ import annotations

import io
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, TextIO

import requests

from emulator import Emulator
from mccf_backup.cli import main as cli_main
from mccf_backup.identity import reset_credentials
from mccf_backup.service import BackupService
from devhost.azurite import Azurite
from devhost.devserver import RunningServer
from devhost.envvars import scoped_environ


def run_demo(out: TextIO = sys.stdout, record: Callable[[requests.Response], None] | None = None) -> int:
    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    headers: dict[str, str] = {}  # the operator's token, once the API guards with Entra ID

    def http(method: str, url: str, **kwargs) -> requests.Response:
        kwargs["headers"] = {**headers, **kwargs.get("headers", {})}
        response = requests.request(method, url, timeout=60, **kwargs)
        if record:
            record(response)
        return response

    def poll_like_logic_apps(response: requests.Response) -> requests.Response:
        while response.status_code == 202:
            say(f"    202 {response.json().get('status')} -> retry after {response.headers['Retry-After']} s")
            time.sleep(int(response.headers["Retry-After"]))
            response = http("GET", response.headers["Location"])
        return response

    with (
        tempfile.TemporaryDirectory(prefix="mccf-demo-") as state,
        Emulator(Path(state) / "emulator", seed=True, operation_seconds=2) as emu,
        Azurite() as azurite,
    ):
        settings = {
            **emu.env,
            "MCCF_TARGETS": emu.env["MCCF_TARGETS"],
            "BACKUP_SCHEDULE": "0 0 2 * * *",
            "AzureWebJobsStorage": azurite.connection_string,
            "JOBS_TABLE_NAME": "mccfbackupjobs",
            "BACKUP_QUEUE_NAME": "mccfbackup-targets",
            "OPERATIONS_QUEUE_NAME": "mccfbackup-operations",
            **emu.api_auth_settings,  # Entra ID app roles on the API, as a production deployment sets them
        }

        def bearer(*roles: str) -> dict[str, str]:
            """A caller's token, got as a tool gets it: an app registration holding these app roles."""
            return {"Authorization": f"Bearer {emu.api_token(*roles)}"}

        with scoped_environ(settings):
            reset_credentials()
            from function_app import app

            with RunningServer(app, function_key=secrets.token_urlsafe(24)) as server:
                key, master = {"code": server.key}, {"code": server.master_key}
                api = f"{server.url}/api"
                targets = emu.env["MCCF_TARGETS"].split(",")
                first_app = targets[0].rsplit("/", 1)[1]
                say(
                    f"==> emulator (ARM, Key Vault, Azure Files, managed identity) and Azurite are up; "
                    f"{len(targets)} targets"
                )
                say("==> scheduled backup: the timer function starts every target's backup and returns")
                fired = time.monotonic()
                timer = http("POST", f"{server.url}/admin/functions/scheduled_backup", params=master)
                say(
                    f"    timer function: {'returned' if timer.status_code == 202 else 'FAILED ' + timer.text} "
                    f"after {time.monotonic() - fired:.1f} s; the operations queue follows each backup"
                )
                engine = BackupService.from_environment()
                while engine.jobs.running():
                    time.sleep(0.5)
                steps = server.pump.stats.durations.get("advance_operation", [])
                say(
                    f"    all backups ended {time.monotonic() - fired:.1f} s after the timer fired: "
                    f"{len(steps)} queue steps, the longest {max(steps, default=0):.2f} s"
                )
                for job in engine.list_jobs(limit=len(targets)):
                    say(f"    {job.target.rsplit('/', 1)[-1]}: {job.state}, share {job.share}")

                say("==> the API wants the function key and an Entra ID token with the route's app role")
                alone = http("POST", f"{api}/backups", params=key, json={"target": first_app})
                say(f"    function key alone: {alone.status_code} {alone.json()['code']}")
                reader = http(
                    "POST", f"{api}/backups", params=key, json={"target": first_app}, headers=bearer("Backup.Read")
                )
                say(f"    a Backup.Read token: {reader.status_code} {reader.json()['code']}: {reader.json()['detail']}")
                headers.update(bearer("Backup.Read", "Backup.Operator", "Restore.Operator"))
                say("    from here on, an operator's token holding all three roles")

                say(f"==> on-demand backup of {first_app} over HTTP, polled as Logic Apps polls")
                accepted = http("POST", f"{api}/backups", params=key, json={"target": first_app})
                say(f"    {accepted.status_code} Accepted, Location: /api/operations/{accepted.json().get('id')}")
                done = poll_like_logic_apps(accepted)
                say(f"    {done.status_code} {done.json().get('status')}: share {done.json().get('share')}")

                say("==> the verify timer checks the new backups' ledger files offline")
                verified = http("POST", f"{server.url}/admin/functions/scheduled_verify", params=master)
                say(f"    verify timer: {'done' if verified.status_code == 202 else 'FAILED ' + verified.text}")

                say(f"==> catalog of {first_app}")
                catalog = http("GET", f"{api}/backups", params={**key, "target": first_app}).json()["backups"]
                for backup in catalog:
                    say(
                        f"    {backup['share']}  trigger={backup['trigger']}  verified={backup['verified']}  "
                        f"ledger seqno {backup['ledger']['firstSeqno']}-{backup['ledger']['lastSeqno']}  "
                        f"restorable={backup['restorable']} ({backup['restorableDaysLeft']} days left)"
                    )

                bad = f"2.{catalog[0]['ledger']['lastSeqno']}"
                say(f"==> which backup undoes transaction {bad}? (restore before it, dry run)")
                body = {"target": first_app, "before": {"txid": bad}, "dryRun": True}
                plan = http("POST", f"{api}/restores", params=key, json=body).json()
                if plan["before"]["share"]:
                    given_up = plan["before"]["transactionsGivenUp"]
                    say(f"    {plan['before']['share']}, giving up {given_up} later transactions")
                for item in plan["before"]["passedOver"]:
                    say(f"    passed over {item['share']}: {item['reason']}")

                say(f"==> pin {catalog[-1]['share']} as a golden copy: retention never deletes it")
                pin = {"target": first_app, "label": "reference-data", "note": "demo"}
                pinned = http("POST", f"{api}/backups/{catalog[-1]['share']}/pin", params=key, json=pin)
                say(
                    f"    {pinned.status_code}: pinned as {pinned.json()['pin']['label']} by {pinned.json()['pin']['by']}"
                )

                say(f"==> restore while {first_app} exists is refused before any ARM call")
                refused = http("POST", f"{api}/restores", params=key, json={"target": first_app})
                say(f"    {refused.status_code} {refused.json()['code']}: {refused.json()['detail']}")

                say(f"==> deleting {first_app} in the emulator, then restoring it from its newest backup")
                target = engine.targets.resolve(first_app)
                deletion = engine.arm.start_delete(target)
                while not engine.arm.status(deletion, target).done:
                    time.sleep(deletion.retry_after)
                restore = poll_like_logic_apps(http("POST", f"{api}/restores", params=key, json={"target": first_app}))
                say(
                    f"    {restore.status_code} {restore.json().get('status')}: restored from "
                    f"{restore.json().get('share')} in {restore.json().get('restoreRegion')}"
                )

                say("==> status per target")
                for item in http("GET", f"{api}/status", params=key).json()["targets"]:
                    newest = item["newestBackup"] or {}
                    say(
                        f"    {item['app']}: newest {newest.get('share')} ({item['newestBackupAgeHours']} h old), "
                        f"last failure: {(item['lastFailure'] or {}).get('error')}"
                    )

                say("==> job history (mccf-backup jobs)")
                listing = io.StringIO()
                cli_main(["jobs"], out=listing, err=listing)
                say("    " + listing.getvalue().rstrip().replace("\n", "\n    "))
        reset_credentials()
    say("==> done: everything the demo started is stopped")
    failed = timer.status_code != 202 or done.status_code != 200 or restore.status_code != 200
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_demo())
