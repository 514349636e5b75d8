"""Start and stop Microsoft's Azurite storage services (the real ones, from npm).

The job history lives in Table storage and the queues in Queue storage; locally that is Azurite,
never a fake. The Functions host itself keeps timer locks and schedule monitors in Blob storage, so
``func start`` needs Blob too (``make emulator`` starts all three, on the well-known ports that
``UseDevelopmentStorage=true`` names); the suite needs only Table and Queue. Azurite's well-known
development account and key are public by design (they are in Microsoft's docs), not a secret.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AZURITE_TABLE = REPO / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-table"
AZURITE_QUEUE = REPO / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-queue"
AZURITE_BLOB = REPO / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# What UseDevelopmentStorage=true means to every Azure Storage SDK and to the Functions host.
WELL_KNOWN_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Azurite:
    """``with Azurite() as azurite:`` Table and Queue on free ports, in memory; ``blob=True`` adds Blob;
    ``well_known_ports=True`` uses 10000-10002, where ``UseDevelopmentStorage=true`` looks."""

    def __init__(self, location: Path | None = None, *, blob: bool = False, well_known_ports: bool = False) -> None:
        if not AZURITE_TABLE.exists():
            raise RuntimeError(f"Azurite is not installed ({AZURITE_TABLE}); run `make test` or `make demo`.")
        services = ("blob", "queue", "table") if blob else ("queue", "table")
        self.ports = {s: WELL_KNOWN_PORTS[s] if well_known_ports else _free_port() for s in services}
        self.port = self.ports["table"]
        self.queue_port = self.ports["queue"]
        self._location = location
        self._processes: list[subprocess.Popen] = []

    @property
    def connection_string(self) -> str:
        if self.ports == WELL_KNOWN_PORTS:
            return "UseDevelopmentStorage=true"
        endpoints = "".join(
            f"{service.capitalize()}Endpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
            for service, port in sorted(self.ports.items())
        )
        return f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};{endpoints}"

    def _start(self, binary: Path, service: str, port: int) -> None:
        """Start one Azurite service on ``port``, and make sure what answers there is that Azurite:
        a free port picked a moment ago may have been taken by another process meanwhile."""
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise RuntimeError(
                    f"Port {port} (Azurite {service}) is already in use: stop what listens there (another "
                    "Azurite, or a previous `make emulator`) and start again."
                )
        command = [str(binary), f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
        command += ["--disableTelemetry", "--skipApiVersionCheck"]
        if self._location is None:
            command.append("--inMemoryPersistence")
        else:
            self._location.mkdir(parents=True, exist_ok=True)
            command += ["--location", str(self._location)]
        # stderr to a file, not a pipe: a pipe nobody reads after the start would fill and stall Azurite.
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
            self._processes.append(process)
            self._wait_listening(process, service, port, errors)

    def _wait_listening(self, process: subprocess.Popen, service: str, port: int, errors) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                errors.seek(0)
                raise RuntimeError(f"Azurite {service} exited at start: {errors.read().decode()[-2000:]}")
            try:
                server = urllib.request.urlopen(f"http://127.0.0.1:{port}/{DEV_ACCOUNT}", timeout=2).headers
            except urllib.error.HTTPError as answered:  # Azurite answers an unsigned request 4xx: it is up
                server = answered.headers
            except OSError:
                time.sleep(0.1)
                continue
            if process.poll() is None and f"Azurite-{service.capitalize()}" in (server.get("Server") or ""):
                return
            raise RuntimeError(f"Port {port} is held by another server than Azurite {service}.")
        raise RuntimeError(f"Azurite {service} did not start listening within 30 seconds.")

    def __enter__(self) -> "Azurite":
        binaries = {"blob": AZURITE_BLOB, "queue": AZURITE_QUEUE, "table": AZURITE_TABLE}
        try:
            for service, port in self.ports.items():
                self._start(binaries[service], service, port)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        self._processes.clear()
