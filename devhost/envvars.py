"""Set environment variables for a block and put the old values back afterwards; read an env file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Mapping


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines, as the emulator writes its emulator.env."""
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)
