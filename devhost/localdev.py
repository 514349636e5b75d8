"""Local development with the real Functions host: ``make emulator`` and ``make local-settings``.

``python -m devhost emulator`` runs the seeded emulator and Azurite (Blob, Queue and Table on the
well-known ports) until Ctrl-C, and writes ``local.settings.json`` for them; ``func start`` in
another terminal then runs the timers (the host keeps their locks in Blob storage), the queue
triggers and the HTTP routes against them. ``python -m devhost local-settings`` writes the file
again from an emulator that is already running (its ports, identity header and CA are in
``.state/emulator/emulator.env``).

The file is the sample (``local.settings.sample.json``) with the values only a running emulator
knows filled in, so the two never disagree on any other setting.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Mapping

import requests

from .envvars import read_env_file

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "local.settings.sample.json"
STATE = REPO / ".state"
# What the sample leaves to this module: the values a running emulator decides.
FROM_THE_EMULATOR = (
    "ARM_ENDPOINT",
    "KEY_VAULT_URL",
    "STORAGE_SECRET_NAME",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "REQUESTS_CA_BUNDLE",
    "MCCF_TARGETS",
)


class LocalDevError(Exception):
    """What went wrong, and what to do: printed as is, never as a stack trace."""


def local_settings(emulator_env: Mapping[str, str], storage_connection: str) -> dict:
    """The sample's settings with the running emulator's and Azurite's filled in."""
    document = json.loads(SAMPLE.read_text(encoding="utf-8"))
    values = document["Values"]
    for name in FROM_THE_EMULATOR:
        values[name] = emulator_env[name]
    values["REQUESTS_CA_BUNDLE"] = str(Path(emulator_env["REQUESTS_CA_BUNDLE"]).resolve())
    values["AzureWebJobsStorage"] = storage_connection
    return document


def write_local_settings(emulator_env: Mapping[str, str], storage_connection: str, path: Path) -> dict:
    """Write ``local.settings.json`` readable by its owner only (it holds the emulator's identity
    header), replacing any previous one whole: a new file created 0600 beside it (never one that
    exists, nor through a link), then renamed over it."""
    document = local_settings(emulator_env, storage_connection)
    try:
        handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise LocalDevError(
            f"Cannot write {path}: {exc.strerror}. Pass --out a file in a folder that exists."
        ) from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(json.dumps(document, indent=2) + "\n")
        os.replace(partial, path)
    except OSError as exc:
        os.unlink(partial)
        raise LocalDevError(f"Cannot write {path}: {exc.strerror}.") from None
    return document


def read_emulator_env(state_dir: Path) -> dict[str, str]:
    """The running emulator's settings; a clear error when none is running."""
    path = state_dir / "emulator" / "emulator.env"
    start_it = "Start it with `make emulator` (which writes local.settings.json itself)."
    if not path.exists():
        raise LocalDevError(f"No emulator has run here ({path} does not exist). {start_it}")
    env = read_env_file(path)
    try:
        requests.get(env["ARM_ENDPOINT"], timeout=5, verify=env["REQUESTS_CA_BUNDLE"])
    except (KeyError, OSError, requests.RequestException):
        raise LocalDevError(f"The emulator is not running (nothing answers at its ARM endpoint). {start_it}") from None
    return env


def storage_connection(state_dir: Path) -> str:
    """Azurite's connection string as ``make emulator`` recorded it (UseDevelopmentStorage=true)."""
    recorded = state_dir / "azurite.connection"
    return recorded.read_text(encoding="utf-8").strip() if recorded.exists() else "UseDevelopmentStorage=true"


def run_emulator(state_dir: Path, settings_path: Path, stop: threading.Event, *, free_ports: bool = False) -> None:
    """The emulator and Azurite until ``stop`` is set, with ``local.settings.json`` written for them.
    Azurite starts first: when its ports are taken (another ``make emulator``?), nothing else has
    been touched yet, the emulator's state included."""
    from emulator import Emulator

    from .azurite import Azurite

    try:
        with (
            Azurite(state_dir / "azurite", blob=True, well_known_ports=not free_ports) as azurite,
            Emulator(state_dir / "emulator", seed=True) as emu,
        ):
            (state_dir / "azurite.connection").write_text(azurite.connection_string + "\n", encoding="utf-8")
            write_local_settings(emu.env, azurite.connection_string, settings_path)
            print(f"emulator: ARM {emu.env['ARM_ENDPOINT']}, Key Vault {emu.env['KEY_VAULT_URL']}")
            print(f"Azurite: Blob, Queue and Table on {sorted(azurite.ports.values())} ({azurite.connection_string})")
            print(f"wrote {settings_path}: run `func start` in another terminal. Ctrl-C stops.", flush=True)
            stop.wait()
    except (OSError, RuntimeError) as exc:
        raise LocalDevError(f"Cannot start the local environment: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("emulator", "run the emulator and Azurite, and write local.settings.json"),
        ("local-settings", "write local.settings.json from the running emulator"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--state-dir", type=Path, default=STATE, help="default: .state")
        command.add_argument(
            "--out", type=Path, default=REPO / "local.settings.json", help="default: local.settings.json"
        )
    commands.choices["emulator"].add_argument(
        "--free-ports",
        action="store_true",
        help="Azurite on free ports, not 10000-10002 (beside another Azurite); the settings name them",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "local-settings":
            env = read_emulator_env(args.state_dir)
            write_local_settings(env, storage_connection(args.state_dir), args.out)
            print(f"wrote {args.out} for the emulator at {env['ARM_ENDPOINT']}")
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # stop Azurite too, not only this process
        try:
            run_emulator(args.state_dir, args.out, stop, free_ports=args.free_ports)
        except KeyboardInterrupt:
            stop.set()
        return 0
    except LocalDevError as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 1
