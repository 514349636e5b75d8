"""Start and stop Microsoft's Azurite Table service (the real one, from npm) for tests and the demo.

The job history lives in Table storage; locally that is Azurite, never a fake. Azurite's well-known
development account and key are public by design (they are in Microsoft's docs), not a secret.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AZURITE_TABLE = REPO / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-table"
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Azurite:
    def __init__(self, location: Path | None = None) -> None:
        if not AZURITE_TABLE.exists():
            raise RuntimeError(f"Azurite is not installed ({AZURITE_TABLE}); run `make test` or `make demo`.")
        self.port = _free_port()
        self._location = location
        self._process: subprocess.Popen | None = None

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.port}/{DEV_ACCOUNT};"
        )

    def __enter__(self) -> "Azurite":
        command = [
            str(AZURITE_TABLE),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(self.port),
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ]
        if self._location is None:
            command.append("--inMemoryPersistence")
        else:
            self._location.mkdir(parents=True, exist_ok=True)
            command += ["--location", str(self._location)]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Azurite exited at start: {self._process.stderr.read().decode()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("Azurite did not start listening within 30 seconds.")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
