"""The azd postdeploy hook: declared in azure.yaml, and, run as azd runs it, it asks the deployed app
for its preflight and prints each verdict with its fix, exiting 1 when a check failed.

`az` is the one thing stood in for (a script that answers the function key, as `az functionapp keys
list` would); the app is the real one behind the dev server, on the emulator.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TOKEN = "eyJfake.entra.token"
BACKUP = "Microsoft.ConfidentialLedger/managedCCFs/backup/action"


def test_azure_yaml_declares_the_hook_for_both_shells():
    hooks = yaml.safe_load((REPO / "azure.yaml").read_text())["hooks"]
    assert set(hooks) == {"postdeploy"}
    posix, windows = hooks["postdeploy"]["posix"], hooks["postdeploy"]["windows"]
    assert (posix["shell"], windows["shell"]) == ("sh", "pwsh")
    assert posix["continueOnError"] is True and windows["continueOnError"] is True  # the deployment stands
    script = REPO / posix["run"]
    assert script.is_file() and os.stat(script).st_mode & stat.S_IXUSR
    assert (REPO / windows["run"]).is_file()


def run_hook(tmp_path: Path, devserver, preflight_env: dict[str, str]) -> subprocess.CompletedProcess:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    az = fake / "az"
    az.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *"keys list"*) echo "{devserver.key}" ;; *"get-access-token"*) echo "{TOKEN}" ;; *) exit 3 ;; esac\n'
    )
    az.chmod(0o755)
    curl = fake / "curl"  # the real curl, its arguments written down: what `ps` would show
    curl.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{tmp_path}/curl-argv"\nexec {shutil.which("curl")} "$@"\n')
    curl.chmod(0o755)
    env = {
        **os.environ,
        **preflight_env,
        "PATH": f"{fake}:{os.environ['PATH']}",
        "AZURE_FUNCTION_APP_NAME": "func-mccfbackup-test",
        "AZURE_RESOURCE_GROUP": "rg-mccfbackup-test",
        "PREFLIGHT_BASE_URL": f"{devserver.url}/api",
    }
    env.setdefault("AUTH_CLIENT_ID", "")
    hook = yaml.safe_load((REPO / "azure.yaml").read_text())["hooks"]["postdeploy"]["posix"]["run"]
    return subprocess.run(["sh", hook], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_the_hook_prints_the_deployed_apps_preflight(tmp_path, devserver, app_env, emulator, monkeypatch):
    schedules = {
        "BACKUP_SCHEDULE": "0 0 2 * * *",
        "PRUNE_SCHEDULE": "0 30 3 * * *",
        "HEALTH_SCHEDULE": "0 15 * * * *",
        "VERIFY_SCHEDULE": "0 */10 * * * *",
    }
    for name, value in schedules.items():
        monkeypatch.setenv(name, value)
    passed = run_hook(tmp_path, devserver, {**schedules, "AUTH_CLIENT_ID": "5d3b0c1e-0000-4000-8000-000000000001"})
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "[  ok  ] identity" in passed.stdout and "[ WARN ] recovery_point" in passed.stdout
    assert "fix: Take one now" in passed.stdout
    argv = (tmp_path / "curl-argv").read_text()
    assert "/preflight" in argv  # curl ran; neither the key nor the token was among its arguments
    for secret in (devserver.key, TOKEN):
        assert secret not in argv and secret not in passed.stdout + passed.stderr

    emulator.deny(emulator.system_identity.client_id, {BACKUP})
    monkeypatch.setattr("functions.http_api._last_preflight", None)  # not the report of 30 s ago
    failed = run_hook(tmp_path, devserver, schedules)
    assert failed.returncode == 1 and "[ FAIL ] permissions" in failed.stdout
    *_, summary, advice = failed.stdout.rstrip().splitlines()
    assert summary.startswith("FAILED:") and "azd hooks run postdeploy" in advice


def test_a_hook_run_against_nothing_says_what_to_check(tmp_path, devserver, app_env):
    class Nowhere:
        url = "http://127.0.0.1:9"
        key = devserver.key

    result = run_hook(tmp_path, Nowhere, {"PREFLIGHT_RETRIES": "0"})
    assert result.returncode == 1 and "did not answer" in result.stderr and "az functionapp show" in result.stderr


def test_a_refused_call_says_the_status_and_what_to_check(tmp_path, devserver, app_env):
    class WrongKey:
        url = devserver.url
        key = "not-the-key"

    result = run_hook(tmp_path, WrongKey, {})
    assert result.returncode == 1 and "answered HTTP 401" in result.stderr and "Backup.Read" in result.stderr
