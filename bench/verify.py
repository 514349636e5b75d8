"""Benchmark: verifying a backup from the share, against the validator alone and raw SHA-256.

    python -m bench.verify [--mib 200] [--small-mib 50]

Generates a signed CCF ledger (bench/ledger_writer.py), then measures in one run on this machine:
raw SHA-256 over the chunk files; the validator alone on local files (the worker process, no
download); the bare download of the files from an Azure Files share on the local emulator (its own
process); and verification from that share (download streamed into the worker). Prints throughput in MiB/s, the ratios, and the validator's peak memory for two
ledger sizes (memory should not grow with the ledger beyond the validator's own Merkle leaves).
Goal: from the share <= 1.25x the validator alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from azure.storage.fileshare import ShareServiceClient

from devhost.emulator_process import EmulatorProcess
from bench.ledger_writer import write_ledger
from mccf_backup.verification import verify_share
from devhost.envvars import scoped_environ

MIB = 2**20


def sha256_files(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(4 * MIB):
                digest.update(block)
    return time.perf_counter() - started


def validator_alone(paths: list[Path]) -> tuple[float, dict]:
    started = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "mccf_backup.verify_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    for path in paths:
        worker.stdin.write(json.dumps({"chunk": str(path)}) + "\n")
        worker.stdin.flush()
        json.loads(worker.stdout.readline())
    worker.stdin.write(json.dumps({"end": True}) + "\n")
    worker.stdin.close()
    report = json.loads(worker.stdout.readline())["report"]
    worker.wait()
    return time.perf_counter() - started, report


def from_share(emulator: EmulatorProcess, paths: list[Path]):
    service = ShareServiceClient.from_connection_string(emulator.connection_string())
    share = service.create_share(f"bench-{uuid.uuid4().hex[:16]}")  # one per measurement, never reused
    share.create_directory("ledger")
    for path in paths:  # setup, not timed
        share.get_file_client(f"ledger/{path.name}").upload_file(path.read_bytes(), max_concurrency=2)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as sink:
        for path in paths:  # the transfer alone, as verify_share downloads it
            with open(Path(sink) / path.name, "wb") as handle:
                share.get_file_client(f"ledger/{path.name}").download_file(max_concurrency=4).readinto(handle)
    download_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = verify_share(share)
    return time.perf_counter() - started, download_seconds, report


def measure(emulator: EmulatorProcess, size_mib: int, scratch: Path) -> dict:
    written = write_ledger(scratch / f"ledger-{size_mib}", size_mib * MIB)
    mib = written.bytes / MIB
    hash_seconds = sha256_files(written.chunks)
    alone_seconds, alone = validator_alone(written.chunks)
    share_seconds, download_seconds, report = from_share(emulator, written.chunks)
    assert alone["ok"] and report.valid, (alone.get("reason"), report.reasons)
    for path in written.chunks:
        path.unlink()
    return {
        "mib": mib,
        "chunks": len(written.chunks),
        "transactions": written.transactions,
        "sha256": mib / hash_seconds,
        "validator": mib / alone_seconds,
        "share": mib / share_seconds,
        "download": mib / download_seconds,
        "ratio": share_seconds / alone_seconds,
        "rss_alone": alone["peak_rss_kib"] / 1024,
        "rss_share": report.validator_peak_rss_kib / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--small-mib", type=int, default=50)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="mccf-bench-") as scratch,
        EmulatorProcess(Path(scratch) / "emulator") as emulator,
        scoped_environ(emulator.env),
    ):
        results = [measure(emulator, size, Path(scratch)) for size in (args.small_mib, args.mib)]
    print(
        f"{'ledger':>10} {'chunks':>6} {'tx':>6} {'SHA-256':>10} {'validator':>10} {'download':>10} {'share':>10} "
        f"{'share/val':>9} {'peak RSS (validator, share)':>28}"
    )
    for r in results:
        print(
            f"{r['mib']:8.1f}Mi {r['chunks']:6d} {r['transactions']:6d} {r['sha256']:7.0f}MiB/s "
            f"{r['validator']:7.0f}MiB/s {r['download']:7.0f}MiB/s {r['share']:7.0f}MiB/s {r['ratio']:8.2f}x "
            f"{r['rss_alone']:12.1f} MiB, {r['rss_share']:.1f} MiB"
        )
    big, small = results[-1], results[0]
    print(
        f"verify from the share costs {big['ratio']:.2f}x the validator alone (goal <= 1.25x) and "
        f"{big['download'] / big['share']:.2f}x the bare download of the same files; "
        f"validator throughput is {big['validator'] / big['sha256']:.2f}x raw SHA-256; "
        f"validator peak memory {small['rss_share']:.1f} MiB at {small['mib']:.0f} MiB vs "
        f"{big['rss_share']:.1f} MiB at {big['mib']:.0f} MiB of ledger"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
