"""The operator CLI on the same engine: readable output, --json, exit codes 0/1/2."""

from __future__ import annotations

import io
import json

import pytest

from mccf_backup.cli import main

from ..emulator.helpers import mgmt_client


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_backup_wait_list_jobs_status_and_restore(app_env, emulator):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    rg, app = target.split("/")[4], target.rsplit("/", 1)[1]
    code, out, err = run("backup", "--target", app, "--wait")
    assert code == 0, err
    assert "backup succeeded: job" in out and f"share {app}-" in out
    assert f"backing up {app}" in err

    code, out, _ = run("list", "--target", app, "--json")
    backups = json.loads(out)["backups"]
    assert code == 0 and len(backups) == 1 and backups[0]["restorable"] is True

    code, out, _ = run("jobs")
    assert code == 0 and "JOB" in out.splitlines()[0] and "succeeded" in out

    code, out, _ = run("status")
    assert code == 0 and app in out and backups[0]["share"] in out

    code, out, _ = run("restore", "--target", app, "--dry-run")
    assert code == 1 and "REFUSED" in out and "FAIL instance_absent" in out and "ok   backup_age" in out

    mgmt_client(emulator).managed_ccf.begin_delete(rg, app).result()
    code, out, _ = run("restore", "--target", app, "--dry-run", "--json")
    assert code == 0 and json.loads(out)["backup"]["share"] == backups[0]["share"]
    code, out, err = run("restore", "--target", app, "--wait")
    assert code == 0, err
    assert "restore succeeded" in out
    assert mgmt_client(emulator).managed_ccf.get(rg, app).properties.provisioning_state == "Succeeded"


def test_backup_without_wait_is_finished_by_a_later_look(app_env):
    app = app_env["MCCF_TARGETS"].split(",")[1].rsplit("/", 1)[1]
    code, out, _ = run("--json", "backup", "--target", app)
    started = json.loads(out)
    assert code == 0 and started["status"] == "running"
    import time

    deadline = time.monotonic() + 30
    while True:
        code, out, _ = run("jobs", "--json", "--target", app)
        job = next(j for j in json.loads(out) if j["id"] == started["id"])
        if job["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert job["status"] == "succeeded" and job["share"].startswith(f"{app}-")


def test_usage_errors_exit_2(app_env):
    assert run("backup", "--target", "nope")[0] == 2
    assert run("backup")[0] == 2
    with pytest.raises(SystemExit) as info:
        run("frobnicate")
    assert info.value.code == 2


def test_invalid_settings_exit_2_and_name_the_setting(app_env, monkeypatch):
    monkeypatch.setenv("MCCF_TARGETS", "/subscriptions/nope")
    code, _, err = run("status")
    assert code == 2 and "MCCF_TARGETS" in err
