"""The emulator in its own process, as Azure is on other machines: its serving must not share the
measured process's GIL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from .envvars import read_env_file


class EmulatorProcess:
    def __init__(self, state: Path, operation_seconds: float | None = None, *extra_args: str) -> None:
        self._state = state
        self._operation_seconds = operation_seconds
        self._extra_args = list(extra_args)
        self._process: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    def __enter__(self) -> "EmulatorProcess":
        command = [sys.executable, "-m", "emulator", "serve", "--state-dir", str(self._state)]
        if self._operation_seconds is not None:
            command += ["--operation-seconds", str(self._operation_seconds)]
        command += self._extra_args
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        for line in self._process.stdout:
            if line.strip() == "ready":
                break
        self.env = read_env_file(self._state / "emulator.env")
        return self

    def connection_string(self) -> str:
        account = self.env["STORAGE_ACCOUNT_NAME"]
        key = json.loads((self._state / "accounts.json").read_text())[account]
        return (
            f"DefaultEndpointsProtocol=https;AccountName={account};AccountKey={key};"
            f"FileEndpoint={self.env['FILE_ENDPOINT']}"
        )

    def control(self, method: str, path: str, body: dict | None = None) -> dict | None:
        """The emulator's control endpoint (faults, latency, request counts)."""
        request = urllib.request.Request(
            self.env["EMULATOR_CONTROL_URL"] + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None

    def count(self, **query: str | int) -> int:
        """Requests the emulator answered, by service, method, path regex and status."""
        return self.control("GET", "/requests?" + "&".join(f"{k}={v}" for k, v in query.items()))["count"]

    def operations(self) -> list[dict]:
        """Every ARM operation the emulator ran (kind, resource, status, times, correlation id)."""
        return self.control("GET", "/operations")

    def cpu_seconds(self) -> float:
        """CPU time the emulator process used so far (user + system), from /proc."""
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.wait(timeout=30)
