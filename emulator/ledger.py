"""The ledger each emulated Managed CCF instance holds: real CCF chunk files.

The fixtures are real ledgers (see fixtures/ccf-ledger/PROVENANCE.md). An
instance "grows": each backup holds one more committed chunk than the one
before, until the fixture set is exhausted, so a later backup always holds
at least as many committed chunks as an earlier one, as a live ledger does.

Layout inside a backup share (documented in emulator/README.md):
    ledger/ledger_<first>-<last>.committed   committed ledger chunks
    snapshots/                               snapshot files (none in the fixtures)
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "ccf-ledger"
# Fixture sets that validate from seqno 1, and so make whole, verifiable backups.
COMPLETE_SETS = ("expired_service", "sgx_service", "cts_canary_sample")
LEDGER_DIR = "ledger"
SNAPSHOT_DIR = "snapshots"
_CHUNK = re.compile(r"ledger_(\d+)-(\d+)\.committed")


def committed_chunks(fixture: str) -> list[Path]:
    """The committed chunk files of a fixture set, in seqno order."""
    folder = FIXTURES / fixture
    if not folder.is_dir():
        raise ValueError(
            f"unknown ledger fixture set {fixture!r}; known: {sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())}"
        )
    files = [p for p in folder.iterdir() if _CHUNK.fullmatch(p.name)]
    return sorted(files, key=lambda p: int(_CHUNK.fullmatch(p.name).group(1)))


def default_fixture(app_name: str) -> str:
    """A stable choice of fixture set for an instance created without one."""
    return COMPLETE_SETS[zlib.crc32(app_name.lower().encode()) % len(COMPLETE_SETS)]
