"""`make emulator` writes a local.settings.json that `func start` can run on: every connection in it answers.

Core Tools do not run here, so the test does what the host and the app would do with the file: the
host's own Blob use (timer locks), the app's tables and queues, its managed identity, ARM, Key Vault
and Azure Files, each through the client the product uses, with only the file's values set.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from devhost.azurite import WELL_KNOWN_PORTS
from devhost.envvars import scoped_environ
from devhost.localdev import FROM_THE_EMULATOR, SAMPLE
from mccf_backup import work_queue
from mccf_backup.identity import reset_credentials
from mccf_backup.run import Run
from mccf_backup.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in FROM_THE_EMULATOR and k != "AzureWebJobsStorage"}


def devhost(command: str, state: Path, out: Path, *options: str) -> subprocess.Popen:
    """``python -m devhost COMMAND`` on this state and output file, as `make` runs it, its output piped."""
    argv = [sys.executable, "-m", "devhost", command, "--state-dir", str(state), "--out", str(out), *options]
    return subprocess.Popen(argv, cwd=REPO, env=CLEAN_ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def every_connection_answers(values: dict[str, str]) -> None:
    """Blob as the host uses it, then the app's Table, Queue, identity, ARM, Key Vault and Files."""
    storage = values["AzureWebJobsStorage"]
    locks = BlobServiceClient.from_connection_string(storage).get_container_client("azure-webjobs-hosts")
    if not locks.exists():
        locks.create_container()
    locks.upload_blob("locks/mccf-backup/scheduled_backup.lock", b"", overwrite=True)
    fresh = {
        "JOBS_TABLE_NAME": f"check{uuid.uuid4().hex[:8]}",
        "OPERATIONS_QUEUE_NAME": f"check-{uuid.uuid4().hex[:8]}",
    }
    with scoped_environ({**values, **fresh}):
        reset_credentials()
        try:
            run = Run(Settings.from_env())
            assert run.jobs.list() == []  # the job table (created on first use) answers
            queue = run.operations_queue()
            work_queue.send(queue, work_queue.StepMessage("check", 0), 0)  # the operations queue answers
            assert [m.content for m in queue.receive_messages()] == [work_queue.StepMessage("check", 0).to_json()]
            for token_scope in ("https://management.azure.com/.default", "https://vault.azure.net/.default"):
                assert run.credential.get_token(token_scope).token  # the managed identity answers
            for target in run.targets:
                assert run.arm.get(target)["properties"]["provisioningState"] == "Succeeded"  # ARM answers
            run.catalog().list_all()  # Key Vault's secret opens Azure Files
        finally:
            reset_credentials()


def the_dev_server_serves_the_api_on(settings_path: Path) -> None:
    """Where Core Tools are missing, the dev server runs the app on the same file."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = "local-settings-check-key"
    server = subprocess.Popen(
        [sys.executable, "-m", "devhost.devserver", "--port", str(port), "--settings", str(settings_path)],
        cwd=REPO,
        env={**CLEAN_ENV, "FUNCTION_KEY": key},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[1][-2000:]
            try:
                status = requests.get(f"http://127.0.0.1:{port}/api/status", params={"code": key}, timeout=30)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the dev server did not answer within 60 s"
                time.sleep(0.2)
        assert status.status_code == 200, status.text
        assert len(status.json()["targets"]) == len(
            json.loads(settings_path.read_text())["Values"]["MCCF_TARGETS"].split(",")
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("ports", ["well-known", "free"])
def test_make_emulator_writes_settings_on_which_every_connection_answers(tmp_path, ports):
    """On Azurite's well-known ports (UseDevelopmentStorage=true) when they are free (when a developer's
    own `make emulator` holds them, beside it), and on free ports, as --free-ports asks."""
    well_known = ports == "well-known" and not any(port_in_use(port) for port in WELL_KNOWN_PORTS.values())
    settings_path = tmp_path / "local.settings.json"
    options = [] if well_known else ["--free-ports"]
    running = devhost("emulator", tmp_path / "state", settings_path, *options)
    try:
        deadline = time.monotonic() + 90
        while not settings_path.exists():
            assert running.poll() is None, running.communicate()[1]
            assert time.monotonic() < deadline, "make emulator wrote no local.settings.json within 90 s"
            time.sleep(0.2)
        written = json.loads(settings_path.read_text())
        values = written["Values"]
        sample = json.loads(SAMPLE.read_text())["Values"]
        assert set(values) == set(sample)
        storage = values["AzureWebJobsStorage"]
        assert storage == "UseDevelopmentStorage=true" if well_known else "BlobEndpoint=http://127.0.0.1:" in storage
        assert not [name for name, value in values.items() if "filled in by" in value]
        assert oct(settings_path.stat().st_mode & 0o777) == "0o600"  # it holds the identity header
        assert sorted(p.name for p in tmp_path.iterdir()) == ["local.settings.json", "state"]  # no partial
        every_connection_answers(values)
        the_dev_server_serves_the_api_on(settings_path)

        again = tmp_path / "again.json"
        rewritten = devhost("local-settings", tmp_path / "state", again)
        assert rewritten.wait(timeout=60) == 0, rewritten.communicate()[1]
        assert json.loads(again.read_text()) == written
    finally:
        running.send_signal(signal.SIGTERM)
        running.wait(timeout=30)
    assert running.returncode == 0
    if well_known:
        assert not [port for port in WELL_KNOWN_PORTS.values() if port_in_use(port)]  # Azurite stopped with it


def test_the_settings_file_is_never_written_through_a_link_or_into_a_missing_folder(tmp_path):
    """A planted link where the file goes is replaced, not followed; a bad --out is a message, not a trace."""
    from devhost.localdev import LocalDevError, write_local_settings

    env = {name: "https://127.0.0.1:1/" for name in FROM_THE_EMULATOR} | {"REQUESTS_CA_BUNDLE": "ca.pem"}
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "local.settings.json").symlink_to(victim)
    write_local_settings(env, "UseDevelopmentStorage=true", tmp_path / "local.settings.json")
    assert victim.read_text() == "keep me" and not (tmp_path / "local.settings.json").is_symlink()
    assert oct((tmp_path / "local.settings.json").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(LocalDevError, match="folder that exists"):
        write_local_settings(env, "UseDevelopmentStorage=true", tmp_path / "missing" / "local.settings.json")


def test_local_settings_without_a_running_emulator_says_what_to_do(tmp_path):
    for state in (tmp_path / "never-ran", tmp_path / "stopped"):
        if state.name == "stopped":  # an emulator ran here once, on a port nothing answers on now
            (state / "emulator").mkdir(parents=True)
            (state / "emulator" / "emulator.env").write_text(
                f"ARM_ENDPOINT=https://127.0.0.1:9/\nREQUESTS_CA_BUNDLE={tmp_path / 'ca.pem'}\n"
            )
        refused = devhost("local-settings", state, tmp_path / "out.json")
        out, err = refused.communicate(timeout=60)
        assert refused.returncode == 1 and "make emulator" in err and "Traceback" not in err, err
        assert not (tmp_path / "out.json").exists()


def test_the_sample_holds_valid_defaults_except_what_the_emulator_fills_in():
    values = json.loads(SAMPLE.read_text())["Values"]
    marked = {
        name for name, value in values.items() if "filled in by `make emulator` or `make local-settings`" in value
    }
    assert marked == set(FROM_THE_EMULATOR) - {"STORAGE_SECRET_NAME", "MCCF_TARGETS"}
    assert not [name for name, value in values.items() if "<" in value or "port from" in value]
    filled = {**values, **{name: "https://127.0.0.1:1/" for name in marked}, "REQUESTS_CA_BUNDLE": ""}
    with scoped_environ(filled):
        Settings.from_env()  # every other value parses as it stands
